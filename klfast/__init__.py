"""klfast: fast, safe row-wise divergences between probability distributions.

Each function reduces along ``axis`` (default: the last, so each row of a 2-D
array is one distribution) in compiled, multi-threaded kernels:

* :func:`kl` -- Kullback-Leibler divergence KL(p || q)
* :func:`jeffreys` -- symmetric Jeffreys divergence KL(p || q) + KL(q || p)
* :func:`entropy` -- Shannon entropy H(p)
* :func:`cross_entropy` -- cross-entropy H(p, q) = H(p) + KL(p || q)
* :func:`jensen_shannon` -- Jensen-Shannon divergence (``distance=True``: a metric)

Zeros never produce NaN: see :data:`DEFAULT_EPS` and the epsilon rule in the
README. Rows must be distributions (summing to 1 within :data:`SUM_TOLERANCE`)
unless ``normalize=True`` or ``check_sums=False``.
"""
# What lives where (the package):
#   _api.py        the public functions (kl, jeffreys, entropy, cross_entropy,
#                  jensen_shannon) and the row engine behind them: axis,
#                  broadcasting, dtypes, layouts, out=, threads, the failing row
#   _validate.py   the argument checks and the messages naming an invalid row,
#                  used by _api, _loss, dask and the command line alike
#   _loss.py       kl_loss and cross_entropy_loss from logits, with gradients
#   _kernels, _loss_kernels   the compiled kernels, built from src/ (src/README.md)
#   _io.py, cli.py the `klfast` command: file readers and writers, options;
#                  __main__.py is the demo (`python -m klfast`)
#   dask.py        lazy, chunked scoring of dask arrays (imported only for them)
#   _config.py     show_config(); datasets.py the examples' data; *.pyi the stubs
#   _reference.py  the slow twin: the formulas in plain NumPy, the tests' oracle
#   bench/         the benchmark report (`python -m klfast.bench`): peers.py
#                  times klfast and its peers, report.py writes the report,
#                  memory.py measures peak memory in a subprocess
try:
    from . import _kernels
except ImportError as exc:  # e.g. `python -m klfast` in the repository root
    import os as _os

    if _os.path.exists(_os.path.join(_os.path.dirname(__file__), "..", "setup.py")):
        raise ImportError(
            "klfast is being imported from its source folder, which holds no compiled "
            "kernels. Install it (pip install .) and run from another directory, or use "
            "the installed command: klfast demo"
        ) from exc
    raise

from ._core.engine import default_num_threads
from ._core.measures import cross_entropy, entropy, jensen_shannon, jeffreys, kl
from ._core.validate import DEFAULT_EPS, SUM_TOLERANCE
from ._config import show_config
from ._core.losses import cross_entropy_loss, kl_loss
from . import datasets
from ._version import __version__

__all__ = [
    "DEFAULT_EPS",
    "SUM_TOLERANCE",
    "__version__",
    "cross_entropy",
    "cross_entropy_loss",
    "default_num_threads",
    "entropy",
    "jensen_shannon",
    "jeffreys",
    "kl",
    "kl_loss",
    "show_config",
]
