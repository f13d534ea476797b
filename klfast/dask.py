"""klfast on dask arrays: lazy, chunked, distributed row scores.

``klfast.kl`` and the other measures send dask arrays here (klfast imports
this module only when it sees one, so ``import klfast`` never imports
dask). The result is a lazy dask array of row scores built with
``map_blocks``: every block of rows is scored by the compiled kernel on
whichever worker holds it, and nothing is computed until ``.compute()``.

Use it on one machine (dask's threaded scheduler) or on a cluster::

    from dask.distributed import Client
    import dask.array as da
    import klfast

    client = Client("tcp://scheduler-host:8786")      # an existing cluster
    p = da.from_npy_stack("/shared/p_blocks", mmap_mode="r")   # (n_rows, k)
    q = da.from_npy_stack("/shared/q_blocks", mmap_mode="r")
    scores = klfast.kl(p, q).compute()                 # or .to_zarr(...), da.store(...)

Semantics are those of the in-memory functions, with three differences:

* each block must hold whole distributions, so inputs chunked along ``axis``
  are rechunked (with a ``UserWarning``) to one chunk along it;
* ``num_threads=None`` runs each block on one thread: dask's workers already
  run blocks in parallel, and more threads per worker thread would
  oversubscribe the cores. Pass ``num_threads`` to give each block more;
* invalid values (negative, NaN, inf) are found when the blocks are computed,
  and the ``ValueError`` then names the row in the whole array; ``out=`` is not
  supported.

``klfast.summary`` of a dask array computes it and summarises the gathered
scores (one float per row), with the same bits as for the computed array.
"""
import math
import warnings

import dask
import dask.array as da
from dask.array.core import unify_chunks
import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from ._core import measures, summary as summary_module, validate


def _score_block(*blocks, n_inputs, measure, eps, base, normalize, check_sums, num_threads,
                 input, temperature, names, block_info=None):
    """Scores of one block of rows (``blocks``: p, q unless n_inputs is 1, and
    the where mask with a trailing axis of 1, if any); an invalid row is named
    by its index in the whole array."""
    p, q = blocks[0], blocks[1] if n_inputs == 2 else None
    where = blocks[n_inputs][..., 0] if len(blocks) > n_inputs else None
    start, unknown = (), None
    if block_info is not None:
        start = tuple(lo for lo, _ in block_info[None]["array-location"])
        if any(math.isnan(lo) for lo in start):  # unknown chunk sizes: rows of this block
            start, unknown = (), tuple(block_info[None]["chunk-location"])
    try:
        return measures.reduce(measure, p, q, -1, eps, base, normalize, check_sums, False, None,
                               num_threads, input, temperature, where=where, names=names,
                               start=start)
    except ValueError as e:
        if unknown is None:
            raise
        raise ValueError(f"{e} (counting from the start of block {unknown}: the chunk sizes "
                         f"are unknown)") from None


def _as_dask(x, name):
    x = x if isinstance(x, da.Array) else da.asarray(x)
    validate.as_input(np.empty(0, dtype=x.dtype), name)  # TypeError for complex, object, str
    return x


def _whole_rows(x, name):
    """``x`` (axis moved last) with one chunk along the last axis."""
    if x.numblocks[-1] > 1:
        warnings.warn(
            f"klfast: {name} is chunked along the reduction axis ({len(x.chunks[-1])} "
            f"chunks); rechunking so that each block holds whole distributions. "
            f"Chunk only the other axes to avoid this.",
            UserWarning,
            stacklevel=5,  # _whole_rows, reduce, measures.reduce, klfast.kl, caller
        )
        x = x.rechunk({**{i: "auto" for i in range(x.ndim - 1)}, x.ndim - 1: -1})
    return x


def _broadcast_outer(shapes):
    """numpy's broadcast of equal-length shapes that may hold NaN (a size dask
    does not know yet: trusted to match); None when they cannot broadcast."""
    outer = []
    for sizes in zip(*shapes):
        known = {n for n in sizes if not math.isnan(n) and n != 1}
        if len(known) > 1:
            return None
        if known:
            outer.append(known.pop())
        elif any(math.isnan(n) for n in sizes):
            outer.append(math.nan)
        else:
            outer.append(1)
    return tuple(outer)


def reduce(measure, p, q, *, axis, eps, base, normalize, keepdims, out, num_threads,
           check_sums=True, names=("p", "q"), input="probs", temperature=1.0, where=None):
    """Lazy row scores of dask (or mixed dask/numpy) inputs; see ``klfast.kl``.

    Returns a dask array of the shape and dtype the in-memory function would
    return. ``q`` is None for entropy. ``names`` label the inputs in errors
    about invalid values (the command line passes file names). ``where`` (a
    bool dask or numpy array broadcast against the result) is chunked like
    the rows: each block reads only the rows its part of the mask includes.
    """
    if out is not None:
        raise TypeError(
            "out= is not supported for dask arrays: the result is lazy; use "
            "dask.array.store(result, target) or result.compute() instead"
        )
    eps = validate.check_eps(eps)
    normalize = validate.check_flag(normalize, "normalize")
    check_sums = validate.check_flag(check_sums, "check_sums")
    keepdims = validate.check_flag(keepdims, "keepdims")
    axis = validate.check_axis(axis)
    validate.log_scale(base)
    num_threads = validate.check_num_threads(num_threads)
    if num_threads is None:
        num_threads = 1
    forms, temperature = validate.check_forms_and_temperature(
        input, temperature, ("p",) if q is None else ("p", "q"))

    p = _as_dask(p, "p")
    arrays = [p] if q is None else [p, _as_dask(q, "q")]
    ndim = max(x.ndim for x in arrays)
    if ndim == 0:
        raise np.exceptions.AxisError(axis, 0, "p and q must have at least one dimension")
    ax = normalize_axis_index(axis, ndim)
    arrays = [x[(None,) * (ndim - x.ndim)] for x in arrays]  # numpy's broadcasting rule
    k = arrays[0].shape[ax]
    if any(math.isnan(x.shape[ax]) for x in arrays):
        raise ValueError(f"the length along axis {axis} is unknown; call "
                         f"compute_chunk_sizes() on the dask array first")
    if any(x.shape[ax] != k for x in arrays):
        raise ValueError(
            f"p and q must have the same length along axis {axis}: "
            f"shapes {p.shape} and {arrays[1].shape}"
        )
    outer = _broadcast_outer([x.shape[:ax] + x.shape[ax + 1:] for x in arrays])
    if outer is None:
        raise ValueError(f"p and q shapes {p.shape} and {arrays[1].shape} do not broadcast")

    dtype = validate.result_dtype(*(x.dtype for x in arrays))
    if "logits" in forms:
        validate.check_temperature_dtype(temperature, dtype)
    rows = []
    for x, name in zip(arrays, ("p", "q")):  # a loop: stacklevel stays right
        rows.append(_whole_rows(x if ax == ndim - 1 else da.moveaxis(x, ax, -1), name))
    n_inputs = len(rows)
    if where is not None:  # a trailing axis of 1: blocks of the mask go with blocks of rows
        rows.append(_where_rows(where, outer, ax if keepdims else None)[..., None])
    if len(rows) > 1:  # the same row chunks for all; size-1 dimensions broadcast
        letters = "abcdefghijklmnopqrstuvwxyz"[:ndim]
        _, rows = unify_chunks(*(part for x in rows for part in (x, letters)))
    result = da.map_blocks(
        _score_block,
        *rows,
        drop_axis=ndim - 1,
        dtype=dtype,
        meta=np.empty((0,) * len(outer), dtype=dtype),
        n_inputs=n_inputs,
        measure=measure,
        eps=eps,
        base=base,
        normalize=normalize,
        check_sums=check_sums,
        num_threads=num_threads,
        input=forms,
        temperature=temperature,
        names=tuple(names),
    )
    if keepdims:
        result = result[(slice(None),) * ax + (None,)]  # works with unknown chunk sizes
    return result


def _where_rows(where, outer, keepdims_axis):
    """``where=`` as a bool dask array of the rows' shape ``outer``, checked
    as the in-memory functions check it."""
    if not isinstance(where, da.Array):
        return da.from_array(validate.check_where(where, outer, keepdims_axis))
    if any(math.isnan(n) for n in where.shape + outer):
        raise ValueError("where= needs known chunk sizes; call compute_chunk_sizes() on the "
                         "dask arrays first")
    # the dtype and shape checks on a stand-in of where's dtype and shape
    validate.check_where(np.broadcast_to(np.zeros((), where.dtype), where.shape), outer,
                         keepdims_axis)
    if where.ndim == len(outer) + 1:  # a mask of the kept shape (keepdims)
        where = where.squeeze(axis=keepdims_axis)
    return da.broadcast_to(where, outer)


def summary(scores, *, where=None, top1_agree=None):
    """``klfast.summary`` of dask arrays: they are computed together (the
    scores, one float per row, are gathered here) and summarised as numpy
    arrays, so the result is bitwise that of the computed scores whatever
    the chunks."""
    scores, where, top1_agree = dask.compute(scores, where, top1_agree)
    return summary_module.summary(scores, where=where, top1_agree=top1_agree)

# ---- all pairs ------------------------------------------------------------

def _pairwise_block(p, q, *, first_row, measure, options):
    """The pairs of one block of rows of P against Q (in memory); errors name
    the row in the whole of P."""
    from ._core import pairwise as pairwise_module

    try:
        return pairwise_module.pairwise(p, q, measure, **options)
    except ValueError:
        message = validate.invalid_row_message(p, None, options["normalize"], (first_row,),
                                               ("P",), check_sums=options["check_sums"])
        if message is None:
            raise
        raise ValueError(message) from None


def pairwise(P, Q, measure, *, eps, base, normalize, check_sums, distance, out, topk,
             num_threads):
    """Lazy :func:`klfast.pairwise` of a dask array P (chunked by rows)
    against Q in memory: a dask array of shape (n, m) chunked like P's rows,
    or with ``topk`` a pair of dask arrays (indices, values) of shape
    (n, topk). Arguments and Q are checked now; the rows of P when the
    blocks are computed (a ValueError names the row in the whole of P).
    ``num_threads=None`` runs each block on one thread."""
    from dask import delayed

    from ._core import pairwise as pairwise_module

    if out is not None:
        raise TypeError("out= is not supported for dask arrays: the result is lazy; use "
                        "dask.array.store(result, target) or result.compute() instead")
    if Q is None:
        raise TypeError("Q=None with a dask P: P against itself needs P in memory as Q; "
                        "pass Q=P.compute() (or a numpy array)")
    if isinstance(Q, da.Array):
        raise TypeError("Q must be in memory (a numpy array) when P is a dask array; "
                        "call Q.compute() first")
    P = _as_dask(P, "P")
    if P.ndim != 2:
        raise ValueError(f"P must be 2-D (n_rows, k), one distribution per row; got shape "
                         f"{P.shape}")
    if math.isnan(P.shape[1]):
        raise ValueError("the number of columns of P is unknown; call compute_chunk_sizes() "
                         "on the dask array first")
    options = dict(eps=eps, base=base, normalize=normalize, check_sums=check_sums,
                   distance=distance, topk=topk,
                   num_threads=1 if num_threads is None else num_threads)
    if measure in ("jensen_shannon", "js"):
        options.pop("eps")
    # every argument and every row of Q checked now, on no rows of P
    pairwise_module.pairwise(np.empty((0, P.shape[1]), dtype=P.dtype), Q, measure, **options)
    Q = np.asarray(Q)
    dtype = validate.result_dtype(P.dtype, Q.dtype)
    P = _whole_rows(P, "P")
    if any(math.isnan(c) for c in P.chunks[0]):
        raise ValueError("the chunk sizes of P are unknown; call compute_chunk_sizes() on "
                         "the dask array first")
    starts = np.cumsum((0,) + P.chunks[0][:-1])
    q_task = delayed(Q, pure=True)
    blocks = P.to_delayed()[:, 0]
    m = Q.shape[0]
    if topk is None:
        parts = [da.from_delayed(delayed(_pairwise_block, pure=True)(
                    block, q_task, first_row=int(r0), measure=measure, options=options),
                 shape=(rows, m), dtype=dtype)
                 for block, r0, rows in zip(blocks, starts, P.chunks[0])]
        return da.concatenate(parts, axis=0) if parts else da.empty((0, m), dtype=dtype)
    indices, values = [], []
    for block, r0, rows in zip(blocks, starts, P.chunks[0]):
        both = delayed(_pairwise_block, pure=True, nout=2)(
            block, q_task, first_row=int(r0), measure=measure, options=options)
        indices.append(da.from_delayed(both[0], shape=(rows, topk), dtype=np.int64))
        values.append(da.from_delayed(both[1], shape=(rows, topk), dtype=dtype))
    if not indices:
        return (da.empty((0, topk), dtype=np.int64), da.empty((0, topk), dtype=dtype))
    return da.concatenate(indices, axis=0), da.concatenate(values, axis=0)
