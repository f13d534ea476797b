"""The version of klfast: the one place it is written.

pyproject.toml reads it at build time (``[tool.setuptools.dynamic]``), so the
installed package's metadata, ``klfast.__version__``, ``klfast --version`` and
``klfast.show_config()`` always agree. Keep it a plain string literal: the
build reads this file without importing klfast.
"""
__version__ = "0.1.0"
