"""The row engine: the one caller of the compiled kernels.

A call reaches it as broadcast N-D views whose last axis holds each row's
elements (outer..., k), an output of shape (outer...) and a job: which kernel
scores a block of rows and how a row it rejects is explained. The engine
splits the views into 2-D problems without copies, converts in bounded blocks
the layouts a kernel cannot read, writes into ``out``, picks the thread count,
and turns the first rejected row into a ValueError naming it.

Two jobs: :class:`MeasureJob` (probabilities p and q, or p alone, give one
score per row) and :class:`FormsJob` (inputs in any form, probabilities,
log-probabilities or logits, give one score per row; the losses' target and
logits give one loss per row and, if asked, the gradient of every element).
"""
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _kernels
from .validate import SUM_TOLERANCE, explain_forms_row, explain_measure_row

MEASURES = _kernels.MEASURES  # measure name -> kernel code
FORMS = _kernels.FORMS  # input form name -> kernel code
LOSSES = _kernels.LOSSES  # loss name -> kernel code
# The common call (plain arrays, keywords of plain values) goes straight to
# C, small or large: it returns None whenever the general path must decide.
fast_call = _kernels.fast
fast_loss = _kernels.fast_loss  # the same for the losses' rows and gradient
reduce_rows = _kernels.reduce_rows  # a loss's sum or mean of its rows, for both paths

# An input the kernel cannot read directly (dtype, byte order, layout) is
# converted in blocks of rows of about this many elements: never an
# input-sized temporary.
BLOCK_ELEMENTS = 1 << 20
OUT_BLOCK_ROWS = 1 << 16  # results converted a block at a time: 512 KiB of float64
# Below this many input elements a call runs on one thread: starting threads
# costs more than it saves.
MIN_PARALLEL_ELEMENTS = 1 << 16

# float16 (and bfloat16) rows at least this long are read by the kernels as
# they are, each row widened to float32 in a buffer of one row per thread;
# shorter ones are converted in blocks and go across vector lanes.
WIDEN_MIN_K = 16
WIDENED = ("float16", "bfloat16")  # native byte order, 2 bytes (bfloat16: ml_dtypes)


# ---- threads ---------------------------------------------------------------
def default_num_threads():
    """Threads a call with ``num_threads=None`` may use.

    The smaller of the cores this process may run on and OpenMP's limit for
    the calling thread (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits``);
    1 when klfast was built without OpenMP (nothing then says what the limit
    is). klfast's threads are its own (``src/engine/pool.h``); OpenMP only
    tells how many it may use.
    """
    return _kernels.default_threads()


def resolve_threads(num_threads, n_rows, k):
    """Threads for ``n_rows`` rows of ``k`` elements (``num_threads`` checked):
    ``num_threads`` (None: :func:`default_num_threads`) capped by the cores
    and the rows (``_kernels.threads``, which the C shortcut uses too)."""
    if n_rows * k < MIN_PARALLEL_ELEMENTS or n_rows < 2:
        return 1
    return _kernels.threads(num_threads, n_rows)


# ---- the jobs: what differs between the measures and the losses ------------
def _row_stride(x):
    """The row stride of a 2-D view (or the stride of a 1-D one) for a kernel:
    0 for a single row, which is then read for every row."""
    return x.strides[0] if x.shape[0] > 1 else 0


def _widened(job):
    """The 16-bit dtypes a job's kernels read as they are: those of its float32
    arithmetic (a float32 result, or float32 forms)."""
    return WIDENED if job.dtype == np.float32 else ()


class MeasureJob:
    """A divergence (rows of p and q) or the entropy (rows of p): one score
    per row, in the inputs' dtype."""

    __slots__ = ("measure", "eps", "scale", "normalize", "check_sums", "num_threads", "dtype",
                 "out_dtype", "names", "start")

    def __init__(self, measure, eps, scale, normalize, check_sums, num_threads, dtype, names,
                 start=()):
        self.measure = MEASURES[measure]
        self.eps = eps
        self.scale = scale
        self.normalize = normalize
        self.check_sums = check_sums
        self.num_threads = num_threads
        self.dtype = self.out_dtype = dtype
        self.names = names  # of the inputs, for errors: ("p", "q") or ("p",)
        self.start = start  # index of the first row in the whole input, for errors

    # the kernels read rows whose elements are not contiguous (columns)
    strided = True

    widened = property(_widened)

    def kernel(self, rows, grad, out, n_rows, k, threads, index=None):
        p, q = rows[0], rows[-1]  # the entropy kernel reads p only
        tol = SUM_TOLERANCE if self.check_sums else math.inf
        return _kernels.rows(self.measure, p, _row_stride(p), q, _row_stride(q), out,
                             _row_stride(out), n_rows, k, self.eps, self.scale, self.normalize,
                             tol, threads, p.strides[1], q.strides[1], index)

    def explain(self, rows, read, index):
        return explain_measure_row(self.names, rows, index, self.normalize, self.check_sums)


class FormsJob:
    """A divergence or the entropy of inputs in any form (``forms``, one per
    input: "probs", "log_probs", "logits"), or a loss (``loss``: the target
    and the logits, with the gradient unless ``grad`` is None): one float64
    value per row (times ``scale``), the gradient in the inputs' dtype.
    ``inv_temperatures``: 1/T for each logits input, 1 for the others."""

    __slots__ = ("measure", "forms", "inv_temperatures", "normalize", "loss", "check_sums",
                 "eps", "log_prob_max", "grad_scale", "scale", "num_threads", "dtype", "names",
                 "start")
    out_dtype = np.dtype(np.float64)
    strided = False  # rows must be contiguous

    widened = property(_widened)

    def __init__(self, measure, forms, inv_temperatures, *, eps, num_threads, dtype, names,
                 normalize=False, check_sums=True, loss=False, log_prob_max=math.inf,
                 grad_scale=1.0, scale=1.0, start=()):
        self.measure = MEASURES[measure]
        self.forms = forms
        self.inv_temperatures = inv_temperatures
        self.normalize = normalize
        self.loss = loss
        self.check_sums = check_sums
        self.eps = eps
        self.log_prob_max = log_prob_max
        self.grad_scale = grad_scale
        self.scale = scale
        self.num_threads = num_threads
        self.dtype = dtype
        self.names = names  # of the inputs, for errors
        self.start = start  # index of the first row in the whole input, for errors

    def kernel(self, rows, grad, out, n_rows, k, threads, index=None):
        p, q = rows[0], rows[-1]  # the entropy reads p only
        form_p, form_q = FORMS[self.forms[0]], FORMS[self.forms[-1]]
        tol = SUM_TOLERANCE if self.check_sums else math.inf
        return _kernels.forms_rows(
            self.measure, p, _row_stride(p), q, _row_stride(q),
            grad, 0 if grad is None else _row_stride(grad), out, n_rows, k, form_p, form_q,
            self.inv_temperatures[0], self.inv_temperatures[-1], self.normalize, self.loss, tol,
            self.eps, self.log_prob_max, self.grad_scale, self.scale, threads, index)

    def explain(self, rows, read, index):
        return explain_forms_row(self.names, self.forms, rows, read, index, self.normalize,
                                 self.check_sums and not self.loss, self.dtype)


# ---- the engine ------------------------------------------------------------
def run(job, inputs, out, grad=None, callers_out=False, where=None):
    """Let ``job`` fill ``out`` (outer...) from the rows of ``inputs``, views
    of shape (outer..., k), and ``grad`` (outer..., k) unless it is None.

    ``where`` (bool, outer..., or None for every row): only the rows where it
    is True are read and scored; the others of ``out`` are left as they are,
    their gradient rows are set to 0.

    ``callers_out``: ``out`` is (a view of) the caller's ``out=``. When it
    may share memory with an input, the rows are computed into a fresh array
    and copied into it, as numpy's ufuncs do.
    """
    target = out
    if callers_out and any(np.may_share_memory(out, x) for x in inputs):
        out = np.empty(out.shape, dtype=out.dtype)
    _run_nd(job, inputs, grad, out, 0, out.shape, where)
    if out is not target:
        np.copyto(target, out, where=True if where is None else where)


def _run_nd(job, inputs, grad, out, first_row, outer, where=None):
    """Split broadcast N-D views (outer..., k) into 2-D problems without
    copies; ``first_row`` is the flat index of their first row in ``outer``."""
    shape = out.shape
    if len(shape) == 1:  # 2-D views already (the common case: no reshape, ~1 us)
        _run_2d(job, inputs, grad, out, first_row, outer, where)
        return
    n_rows = math.prod(shape)
    k = inputs[0].shape[-1]
    try:
        rows = [x.reshape(n_rows, k, copy=False) for x in inputs]
        grad_rows = None if grad is None else grad.reshape(n_rows, k, copy=False)
        out_rows = out.reshape(n_rows, copy=False)
    except ValueError:  # strides that do not collapse: one level down
        step = n_rows // shape[0] if shape[0] else 0
        for i in range(shape[0]):
            _run_nd(job, [x[i] for x in inputs], None if grad is None else grad[i], out[i],
                    first_row + i * step, outer, None if where is None else where[i])
        return
    _run_2d(job, rows, grad_rows, out_rows, first_row, outer,
            None if where is None else np.reshape(where, n_rows))


# A masked call scores each run of consecutive included rows in place, unless
# the runs are so short that their per-call cost (~RUN_COST elements' worth)
# exceeds copying the rows: then the kernels read the included rows through
# their index (_run_indexed), or, for inputs they cannot read as they are,
# the included rows are gathered a block at a time into bounded buffers.
RUN_COST = 16_000


def _run_where(job, inputs, grad, out, first_row, outer, where):
    """The rows of 2-D views where the bool (n_rows,) ``where`` is True; the
    others are never read, and their gradient rows are set to 0."""
    n_rows, k = inputs[0].shape
    if grad is not None:
        grad[~where] = 0
    included = np.flatnonzero(where)
    if len(included) == 0:
        return
    breaks = np.flatnonzero(np.diff(included) != 1) + 1
    starts = included[np.concatenate(([0], breaks))].tolist()
    ends = (included[np.concatenate((breaks - 1, [len(included) - 1]))] + 1).tolist()
    if len(starts) * RUN_COST <= len(included) * max(k, 1):
        for a, b in zip(starts, ends):
            _run_2d(job, [x[a:b] for x in inputs], None if grad is None else grad[a:b],
                    out[a:b], first_row + a, outer)
        return
    if _run_indexed(job, inputs, grad, out, included):
        return
    # the chosen rows gathered into blocks (and, for an invalid row, its error)
    block = max(1, BLOCK_ELEMENTS // max(k, 1))
    for r0 in range(0, len(included), block):
        chosen = included[r0:r0 + block]
        shape = (len(chosen), k)
        rows = [np.broadcast_to(x[:1], shape) if x.strides[0] == 0 else x[chosen]
                for x in inputs]
        out_block = np.empty(len(chosen), dtype=out.dtype)
        grad_block = None if grad is None else np.empty(shape, dtype=grad.dtype)
        _run_2d(job, rows, grad_block, out_block, first_row, outer, index=chosen)
        out[chosen] = out_block
        if grad is not None:
            grad[chosen] = grad_block


def _run_indexed(job, inputs, grad, out, included):
    """The rows ``included`` (increasing) scored by the kernel where they are,
    on the call's threads, when it reads every input and ``grad`` as they are
    and their rows' elements are contiguous (results the kernel cannot write
    into ``out``, the forms kernels' float64 for a float32 result, go
    through a float64 array of one value per row): True when done, False
    when it cannot, or when a row is invalid (the gathered rows then say
    which, as for any other call)."""
    n_rows, k = inputs[0].shape
    widened = job.widened if k >= WIDEN_MIN_K else ()
    if not (all(_kernel_ready(x, job.dtype, False, widened) for x in inputs)
            and _grad_ready(job, grad)):
        return False
    target = out if _out_ready(job, out) else np.empty(n_rows, dtype=job.out_dtype)
    index = np.ascontiguousarray(included, dtype=np.int64)
    threads = resolve_threads(job.num_threads, len(index), k)
    if job.kernel(inputs, grad, target, len(index), k, threads, index=index):
        return False
    if target is not out:
        out[index] = target[index]
    return True


def _grad_ready(job, grad):
    """True when the kernel writes the gradient ``grad`` (or there is none)
    where it is."""
    return grad is None or (_kernel_ready(grad, job.dtype) and grad.flags.writeable)


def _out_ready(job, out):
    """True when the kernel writes its results into ``out`` where it is."""
    return (out.dtype == job.out_dtype and out.flags.aligned and out.flags.writeable
            and (job.strided or out.flags.c_contiguous))


def _kernel_ready(x, dtype, strided=False, widened=()):
    """True when a kernel can read the 2-D view ``x`` without a copy
    (``strided``: one whose row elements need not be contiguous; ``widened``:
    the 16-bit dtypes it also reads, widening a row at a time)."""
    item = x.dtype.itemsize
    return (
        (x.dtype == dtype
         or (x.dtype.itemsize == 2 and x.dtype.isnative and x.dtype.name in widened))
        and x.flags.aligned
        and (x.shape[1] <= 1 or x.strides[1] == item or (strided and x.strides[1] % item == 0))
        and (x.shape[0] <= 1 or x.strides[0] % item == 0)
    )


def _source(x, dtype, strided, widened=()):
    """What the kernel reads for the 2-D view ``x``: ``x`` itself; the one
    row of a broadcast input (row stride 0), converted once; or None, when
    ``x`` must be converted block by block."""
    if _kernel_ready(x, dtype, strided, widened):
        return x
    if x.shape[0] > 1 and x.strides[0] == 0:
        with np.errstate(over="ignore"):  # too large for float32: the kernel rejects the row
            return np.ascontiguousarray(x[:1], dtype=dtype)
    return None


def _block(x, source, r0, r1, dtype):
    """Rows r0:r1 of ``x`` as the kernel reads them."""
    if source is None:
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(x[r0:r1], dtype=dtype)
    return x[r0:r1] if source is x else source


def _run_2d(job, inputs, grad, out, first_row, outer, where=None, index=None):
    """The rows of 2-D views (n_rows, k) into the 1-D view ``out`` (n_rows,);
    ``index``: the rows' flat indices from ``first_row`` (gathered rows),
    None when they are consecutive."""
    n_rows, k = inputs[0].shape
    if n_rows == 0:
        return
    if where is not None:
        _run_where(job, inputs, grad, out, first_row, outer, where)
        return
    dtype = job.dtype
    threads = resolve_threads(job.num_threads, n_rows, k)
    widened = job.widened if k >= WIDEN_MIN_K else ()
    sources = [_source(x, dtype, job.strided, widened) for x in inputs]
    grad_ok = _grad_ready(job, grad)
    out_ok = _out_ready(job, out)
    if grad_ok and out_ok and all(source is not None for source in sources):
        if job.kernel(sources, grad, out, n_rows, k, threads):
            _raise_invalid(job, inputs, sources, out, first_row, outer, index)
        return
    # Convert per block of rows into bounded buffers (at most two blocks
    # alive). With more than one thread, numpy converts the next block on
    # this thread while a worker thread scores the previous one: pool
    # threads would only wait for the conversion. When only the results are
    # converted (the forms kernels' float64 into a float32 result), the
    # inputs are read as they are, in blocks of OUT_BLOCK_ROWS rows, each on
    # every thread.
    only_out = grad_ok and all(source is not None for source in sources)
    block = OUT_BLOCK_ROWS if only_out else max(1, BLOCK_ELEMENTS // max(k, 1))
    starts = range(0, n_rows, block)

    def convert(r0):
        r1 = min(n_rows, r0 + block)
        rows = [_block(x, source, r0, r1, dtype) for x, source in zip(inputs, sources)]
        grad_block = None
        if grad is not None:
            grad_block = grad[r0:r1] if grad_ok else np.empty((r1 - r0, k), dtype=dtype)
        out_block = out[r0:r1] if out_ok else np.empty(r1 - r0, dtype=job.out_dtype)
        return r0, r1, rows, grad_block, out_block

    def score(r0, r1, rows, grad_block, out_block, n_threads):
        return job.kernel(rows, grad_block, out_block, r1 - r0, k, n_threads)

    def finish(r0, r1, rows, grad_block, out_block, n_bad):
        if not out_ok:
            out[r0:r1] = out_block
        if not grad_ok:
            grad[r0:r1] = grad_block
        if n_bad:
            _raise_invalid(job, [x[r0:r1] for x in inputs], rows, out_block, first_row + r0,
                           outer, None if index is None else index[r0:r1])

    if threads == 1 or len(starts) == 1 or only_out:
        for r0 in starts:
            blocks = convert(r0)
            finish(*blocks, score(*blocks, threads))
        return
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for r0 in starts:
            blocks = convert(r0)
            if pending is not None:
                finish(*pending[1], pending[0].result())
            pending = worker.submit(score, *blocks, 1), blocks
        finish(*pending[1], pending[0].result())


def _raise_invalid(job, rows, read, out, first_row, outer, index=None):
    """Raise for the first row the kernel rejected (its result is NaN).
    ``rows`` are the inputs' views as given, ``read`` as the kernel read them
    (a broadcast row: one row for all); ``index`` as in _run_2d."""
    local = int(np.flatnonzero(np.isnan(out))[0])
    flat = first_row + (local if index is None else int(index[local]))
    index = tuple(int(i) for i in np.unravel_index(flat, outer)) if len(outer) > 1 else flat
    if job.start:  # the rows are a block of a larger input (the command line, Dask)
        index = (tuple(s + i for s, i in zip(job.start, index)) if len(outer) > 1
                 else job.start[0] + index)
    message = job.explain([x[local] for x in rows],
                          [x[local if x.shape[0] > 1 else 0] for x in read], index)
    if message:
        raise ValueError(message)
    raise RuntimeError(f"klfast: row {index} gave NaN from valid input; please report this")
