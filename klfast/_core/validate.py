"""Validation shared by every entry point: the keyword checks, the input
check, and the messages that name an invalid row.

The functions (klfast._api), the losses (klfast._loss), the Dask path
(klfast.dask) and the command line (klfast.cli, klfast._io) all check their
arguments and explain a row the kernel rejected with these, so an error reads
the same wherever it is raised. This module imports no other klfast module.
"""
import math
import numbers
import operator

import numpy as np

SUM_TOLERANCE = 1e-3
"""How far from 1 a row's sum may be (``|sum - 1| <= SUM_TOLERANCE``) for the
row to count as a distribution when ``normalize=False`` and ``check_sums=True``.
Loose enough for rounding (a float32 softmax of 256,000 classes sums to 1
within 5e-4 even with a naive float32 denominator; rows normalised by numpy
in float64 within 1e-12), tight enough to catch counts, percentages, logits
and truncated distributions."""


def _check_num_threads(num_threads):
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or an int >= 1, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def _check_flag(value, name):
    """A bool keyword: True, False or a numpy bool; anything else is a TypeError
    (an array would otherwise fail with numpy's "truth value is ambiguous")."""
    if value is True or value is False or isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}")


def _check_axis(axis):
    if isinstance(axis, bool):
        raise TypeError("axis must be an int, got bool")
    try:
        return operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int, got {_describe(axis)}") from None


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}" if isinstance(value, (str, float, int)) \
        else type(value).__name__


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    return eps


# eps at or above this rounds to +inf in float32 (float32's largest value is
# 2^128 - 2^104; ties round to even, which is up, to 2^128).
_F32_EPS_LIMIT = 2.0 ** 128 - 2.0 ** 103


def _check_eps_dtype(eps, dtype):
    """float32 inputs apply eps rounded to float32: it must stay finite."""
    if dtype == np.float32 and eps >= _F32_EPS_LIMIT:
        raise ValueError(
            f"eps={eps!r} is above float32's range (largest value 3.4028235e+38): "
            "float32 inputs apply eps rounded to float32; convert the inputs to float64"
        )


def _log_scale(base):
    """Factor turning natural logs into logs in ``base``."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be None or a real number, got {type(base).__name__}")
    base = float(base)
    if not (math.isfinite(base) and base > 0.0 and base != 1.0):
        raise ValueError(f"base must be finite, > 0 and != 1, got {base}")
    return 1.0 / math.log(base)


def _as_input(x, name):
    """Array view of ``x`` and the float dtype it is computed in."""
    if x is None:
        raise TypeError(f"{name} is required (got None)")
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; klfast does not support masks: "
                        f"pass {name}.filled(...) or select the rows to score")
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "f":
        compute = np.float32 if arr.dtype.itemsize <= 4 else np.float64
    elif kind in "biu":
        compute = np.float64
    else:
        raise TypeError(
            f"{name} must hold real numbers (float, int or bool), got dtype {arr.dtype}"
        )
    return arr, np.dtype(compute)


PYTHON_SUM_HINT = ("pass normalize=True to divide each row by its sum, or check_sums=False to "
                   "score the rows as they are")


def _explain(name, row, index, normalize, check_sums=False, sum_hint=PYTHON_SUM_HINT):
    """The problem with one row of one input, or None. ``sum_hint`` ends the
    message about a row that does not sum to 1 (the command line names its
    options)."""
    row = np.asarray(row, dtype=np.float64)
    where = f"{name}: row {index}"
    if np.isnan(row).any():
        return f"{where} contains NaN (at position {int(np.flatnonzero(np.isnan(row))[0])})"
    if np.isinf(row).any():
        j = int(np.flatnonzero(np.isinf(row))[0])
        return f"{where} contains an infinite value ({row[j]}) at position {j}"
    if (row < 0).any():
        j = int(np.flatnonzero(row < 0)[0])
        return f"{where} has a negative entry ({float(row[j])!r}) at position {j}"
    if normalize:
        if not row.any():
            return f"{where} sums to 0 and cannot be normalized"
        with np.errstate(over="ignore"):
            if not math.isfinite(row.sum()):
                return f"{where} sum overflows and cannot be normalized"
    elif check_sums:
        total = float(row.sum())
        if not abs(total - 1.0) <= SUM_TOLERANCE:
            return _sum_message(where, total, sum_hint)
    return None


def _sum_message(where, total, hint=PYTHON_SUM_HINT):
    return (f"{where} sums to {total:.10g}, not 1 (tolerance {SUM_TOLERANCE:g}): it is not a "
            f"probability distribution; {hint}")


def invalid_row_message(p, q, normalize, start=(), names=("p", "q"), check_sums=False,
                        sum_hint=PYTHON_SUM_HINT):
    """Explain the first invalid row of a block, numbered in the whole array.

    ``p`` and ``q`` (``q`` may be None) hold distributions along their last
    axis and broadcast against each other; ``start`` is the index of the
    block's first row in the whole (broadcast) array of rows. Used after the
    kernel reported an invalid row, so it may cost a pass over the block.
    Returns None when no row is invalid.
    """
    p = np.asarray(p)
    pairs = [(names[0], p)]
    if q is not None:
        q = np.asarray(q)
        pairs.append((names[1], q))
    outer = np.broadcast_shapes(*(x.shape[:-1] for _, x in pairs))
    suspect = np.zeros(outer, dtype=bool)
    for _, x in pairs:
        suspect |= _suspect_rows(x, normalize, check_sums)
    for local in np.argwhere(suspect):
        local = tuple(int(i) for i in local)
        where = tuple(s + i for s, i in zip(start, local)) if start else local
        index = where if len(where) > 1 else (where[0] if where else 0)
        for name, x in pairs:
            row = np.broadcast_to(x, outer + x.shape[-1:])[local]
            message = _explain(name, row, index, normalize, check_sums, sum_hint)
            if message:
                return message
    return None


def _suspect_rows(x, normalize, check_sums=False):
    """Rows of ``x`` the kernel may reject (a superset is fine: each is checked)."""
    with np.errstate(invalid="ignore", over="ignore"):
        values = x.astype(np.float64, copy=False)
        bad = ~(np.isfinite(values) & (values >= 0)).all(axis=-1)
        if normalize:
            total = values.sum(axis=-1)
            bad |= ~(np.isfinite(total) & (total > 0))
        elif check_sums:
            bad |= ~(np.abs(values.sum(axis=-1) - 1.0) <= SUM_TOLERANCE)
    return bad
