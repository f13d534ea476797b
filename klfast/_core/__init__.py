"""The library behind klfast's public names, in layers; each module imports
only those listed before it:

validate.py   argument checks, dtypes, and the messages naming an invalid row
engine.py     the row engine, the only caller of the compiled kernels
measures.py   kl, jeffreys, entropy, cross_entropy, jensen_shannon
losses.py     kl_loss, cross_entropy_loss
reference.py  the slow twin in plain NumPy, the tests' oracle (imports no klfast)

Nothing here is public: klfast/__init__.py exports the functions.
"""
