"""klfast: fast, safe row-wise divergences between probability distributions.

Each function reduces along ``axis`` (default: the last, so each row of a 2-D
array is one distribution) in compiled, multi-threaded kernels:

* :func:`kl` -- Kullback-Leibler divergence KL(p || q)
* :func:`jeffreys` -- symmetric Jeffreys divergence KL(p || q) + KL(q || p)
* :func:`entropy` -- Shannon entropy H(p)
* :func:`cross_entropy` -- cross-entropy H(p, q) = H(p) + KL(p || q)
* :func:`jensen_shannon` -- Jensen-Shannon divergence (``distance=True``: a metric)
* :func:`pairwise` -- any of the divergences for every row of P against every
  row of Q, or each row's ``topk`` nearest

and :func:`summary` (or :class:`SummaryAccumulator`, a chunk at a time) gives
the count, mean, standard error, percentiles and max of such scores.

Zeros never produce NaN: see :data:`DEFAULT_EPS` and the epsilon rule in the
README. Rows must be distributions (summing to 1 within :data:`SUM_TOLERANCE`)
unless ``normalize=True`` or ``check_sums=False``.
"""
# What lives where, layer by layer (each imports only the layers above it):
#   _kernels       the compiled kernels, built from src/ (src/README.md);
#   _pairwise      the all-pairs kernels (on the same engine)
#   _diagnostics   the tests' and benchmarks' own compiled kernels
#   _core/         the library behind the public names:
#     validate.py  argument checks, dtypes, and the messages naming an invalid
#                  row; imports no other klfast module
#     engine.py    the row engine, the only caller of the compiled kernels:
#                  N-D views to 2-D rows, layouts converted in blocks, out=,
#                  threads, the first invalid row handed to the job to explain
#     measures.py  kl, jeffreys, entropy, cross_entropy, jensen_shannon: axis,
#                  broadcasting, dtype and out= resolved, then the engine
#     losses.py    kl_loss and cross_entropy_loss from logits, with gradients
#     pairwise.py  pairwise(): all pairs in tiles (matrix products, or the
#                  row functions pair by pair from klfast._pairwise), top-k
#     reference.py the slow twin: the formulas in plain NumPy, the tests' oracle
#     summary.py   summary() and SummaryAccumulator: statistics of score
#                  vectors, exact sums so that no chunking changes a bit
#   the front ends, built on _core and the public functions:
#     dask.py      lazy, chunked scoring of dask arrays (imported only for them)
#     cli.py, _io.py   the `klfast` command: options, file readers and writers;
#                  __main__.py is the demo (`python -m klfast`)
#     _config.py   show_config(); datasets.py the examples' data; *.pyi the stubs
#     bench/       the benchmark report (`python -m klfast.bench`): peers.py
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
from ._core.summary import ScoreSummary, SummaryAccumulator, summary
from ._core.pairwise import pairwise
from . import datasets
from ._version import __version__

__all__ = [
    "DEFAULT_EPS",
    "SUM_TOLERANCE",
    "ScoreSummary",
    "SummaryAccumulator",
    "__version__",
    "cross_entropy",
    "cross_entropy_loss",
    "default_num_threads",
    "entropy",
    "jensen_shannon",
    "jeffreys",
    "kl",
    "kl_loss",
    "pairwise",
    "show_config",
    "summary",
]
