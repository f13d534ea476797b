"""Validation shared by every entry point: the keyword checks, the input
checks and dtypes, and the messages that name an invalid row.

The functions (measures.py), the losses (losses.py), the Dask path
(klfast.dask) and the command line (klfast.cli) all check their arguments and
explain a row the kernel rejected with these, so an error reads the same
wherever it is raised. This module imports no other klfast module.
"""
import math
import numbers
import operator

import numpy as np

DEFAULT_EPS = 1e-12
"""Floor applied to p and q inside logarithms: ``p~ = max(p, eps)``."""

SUM_TOLERANCE = 1e-3
"""How far from 1 a row's sum may be (``|sum - 1| <= SUM_TOLERANCE``) for the
row to count as a distribution when ``normalize=False`` and ``check_sums=True``.
Loose enough for rounding (a float32 softmax of 256,000 classes sums to 1
within 5e-4 even with a naive float32 denominator; rows normalised by numpy
in float64 within 1e-12), tight enough to catch counts, percentages, logits
and truncated distributions."""


INPUT_FORMS = ("probs", "log_probs", "logits")
"""The forms an input may take (``input=``): probabilities, their natural
logs, or logits (log-probabilities up to a constant per row, divided by the
temperature before the softmax)."""

LOG_PROB_MAX = math.log1p(SUM_TOLERANCE)
"""The largest log-probability accepted: 0 up to rounding (a probability of
at most 1 + SUM_TOLERANCE)."""


def check_forms(input, names):
    """The form of each input: ``input`` is one of INPUT_FORMS for every
    input, or a tuple with one per input in argument order (``names``)."""
    forms = (input,) * len(names) if isinstance(input, str) else input
    if not isinstance(forms, (tuple, list)) or not all(isinstance(f, str) for f in forms):
        raise TypeError(f"input must be 'probs', 'log_probs' or 'logits', or a tuple of them "
                        f"(one per input: {', '.join(names)}), got {_describe(input)}")
    if len(forms) != len(names):
        raise ValueError(f"input has {len(forms)} forms {tuple(forms)} for {len(names)} "
                         f"input{'s' if len(names) > 1 else ''} ({', '.join(names)})")
    for name, form in zip(names, forms):
        if form not in INPUT_FORMS:
            raise ValueError(f"input for {name} must be 'probs', 'log_probs' or 'logits', "
                             f"got {form!r}")
    return tuple(forms)


def check_forms_and_temperature(input, temperature, names):
    """(forms, temperature) of a divergence or the entropy: a temperature
    other than 1 needs an input given as logits."""
    forms = check_forms(input, names)
    temperature = check_temperature(temperature)
    if temperature != 1.0 and "logits" not in forms:
        raise ValueError(f"temperature={temperature!r} divides logits, but no input is logits "
                         f"(input={input!r})")
    return forms, temperature


def check_loss_forms(input, target_is_logits):
    """The forms of a loss's (target, logits): ``input`` (None: from
    ``target_is_logits``, its alias for a target of logits)."""
    target_is_logits = check_flag(target_is_logits, "target_is_logits")
    if input is None:
        return ("logits" if target_is_logits else "probs", "logits")
    forms = check_forms(input, ("target", "logits"))
    if forms[1] != "logits":
        raise ValueError(f"input for logits must be 'logits' (a loss is taken from logits), "
                         f"got {forms[1]!r}")
    if target_is_logits and forms[0] != "logits":
        raise ValueError(f"target_is_logits=True contradicts input={input!r}: pass one of them")
    return forms


def check_num_threads(num_threads):
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or an int >= 1, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def check_flag(value, name):
    """A bool keyword: True, False or a numpy bool; anything else is a TypeError
    (an array would otherwise fail with numpy's "truth value is ambiguous")."""
    if value is True or value is False or isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}")


def check_axis(axis):
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


def check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    return eps


# A float64 at or above this rounds to +inf in float32 (float32's largest
# value is 2^128 - 2^104; ties round to even, which is up, to 2^128).
F32_OVERFLOW = 2.0 ** 128 - 2.0 ** 103


def check_eps_dtype(eps, dtype):
    """float32 inputs apply eps rounded to float32: it must stay finite."""
    if dtype == np.float32 and eps >= F32_OVERFLOW:
        raise ValueError(
            f"eps={eps!r} is above float32's range (largest value 3.4028235e+38): "
            "float32 inputs apply eps rounded to float32; convert the inputs to float64"
        )


def check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    temperature = float(temperature)
    if not (temperature > 0.0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    return temperature


def check_temperature_dtype(temperature, dtype):
    """1 / T multiplies the logits in the logits' dtype: it must be finite there."""
    inv = 1.0 / temperature  # +inf for temperatures below 1 / DBL_MAX (5.6e-309)
    limit = F32_OVERFLOW if dtype == np.float32 else math.inf
    if not inv < limit:
        raise ValueError(
            f"temperature={temperature!r} is too small: 1/temperature overflows {dtype} "
            f"(the smallest usable temperature is about "
            f"{'2.9e-39' if dtype == np.float32 else '5.6e-309'})"
        )


REDUCTIONS = ("none", "sum", "mean")


def check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    return reduction


def log_scale(base):
    """Factor turning natural logs into logs in ``base``."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be None or a real number, got {type(base).__name__}")
    try:
        base = float(base)
    except OverflowError:  # an int past the float range
        base = math.inf
    if not (math.isfinite(base) and base > 0.0 and base != 1.0):
        raise ValueError(f"base must be finite, > 0 and != 1, got {base}")
    return 1.0 / math.log(base)


def as_input(x, name):
    """Array view of ``x`` and the float dtype it is computed in."""
    if x is None:
        raise TypeError(f"{name} is required (got None)")
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; klfast does not support masks: "
                        f"pass {name}.filled(...) or select the rows to score")
    arr = _torch_view(x, name) if type(x).__module__.split(".")[0] == "torch" else np.asarray(x)
    kind = arr.dtype.kind
    if kind == "f" or is_bfloat16(arr.dtype):
        compute = np.float32 if arr.dtype.itemsize <= 4 else np.float64
    elif kind in "biu":
        compute = np.float64
    else:
        raise TypeError(
            f"{name} must hold real numbers (float, int or bool), got dtype {arr.dtype}"
        )
    return arr, np.dtype(compute)


def _torch_view(x, name):
    """A numpy view of a CPU torch tensor (Tensor.numpy(): no copy); a
    bfloat16 tensor through DLPack and its 16 bits, as ml_dtypes.bfloat16
    (numpy has no bfloat16 of its own, and DLPack exports none to numpy)."""
    import torch  # already imported: x is a torch object

    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    if x.requires_grad:
        raise TypeError(f"{name} is a torch tensor that requires grad: pass {name}.detach() "
                        f"(klfast returns numpy arrays, not part of torch's graph)")
    if x.device.type != "cpu":
        raise TypeError(f"{name} is a torch tensor on {x.device}: klfast reads CPU memory; "
                        f"pass {name}.cpu()")
    if x.dtype != torch.bfloat16:  # (a view, as np.from_dlpack gives; 0.7 us against 2.4)
        return x.resolve_conj().resolve_neg().numpy()
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(f"{name} is a bfloat16 torch tensor: reading it needs ml_dtypes "
                        f"(pip install 'klfast[bfloat16]')") from None
    return np.from_dlpack(x.view(torch.int16)).view(ml_dtypes.bfloat16)


def is_bfloat16(dtype):
    """``ml_dtypes.bfloat16`` (without importing ml_dtypes). The name is
    asked last: numpy builds it in Python, several us a call."""
    return dtype.itemsize == 2 and dtype.kind == "V" and dtype.name == "bfloat16"


def result_dtype(*arrays):
    """numpy promotion of the inputs (arrays or dtypes), then: float16 and
    bfloat16 -> float32, integer and bool -> float64, longdouble -> float64."""
    dtypes = [x if isinstance(x, np.dtype) else x.dtype for x in arrays]
    dt = np.result_type(*[np.float16 if is_bfloat16(d) else d for d in dtypes])
    if dt.kind == "f" and dt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def logits_dtype(logits):
    """float32 for bfloat16/float16/float32 logits, float64 otherwise."""
    if (logits.dtype.kind == "f" or is_bfloat16(logits.dtype)) and logits.dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_where(where, shape, keepdims_axis=None):
    """``where=``: None, or bool array-like naming the rows to score, broadcast
    to ``shape`` (the result's shape without a kept axis). With
    ``keepdims_axis``, numpy's rule first: broadcast against the result's
    shape, its kept 1 included; a mask that does not, broadcast to
    ``shape``."""
    if where is None:
        return None
    if isinstance(where, np.ma.MaskedArray):
        raise TypeError("where is a numpy.ma.MaskedArray: pass a plain bool array")
    mask = np.asarray(where)
    if mask.dtype != np.bool_:
        raise TypeError(f"where must be bool (True for the rows to score), got dtype {mask.dtype}")
    if keepdims_axis is not None:
        kept = shape[:keepdims_axis] + (1,) + shape[keepdims_axis:]
        try:
            return np.broadcast_to(mask, kept)[(slice(None),) * keepdims_axis + (0,)]
        except ValueError:
            pass
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"where of shape {mask.shape} does not broadcast to the rows' shape "
                         f"{shape}") from None


def check_out(out, shape, dtype, name="out"):
    """``out=`` (or ``grad_out=``) must be a writeable numpy array of the
    result's shape and dtype."""
    if not isinstance(out, np.ndarray) or isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


PYTHON_SUM_HINT = ("pass normalize=True to divide each row by its sum, or check_sums=False to "
                   "score the rows as they are")


def explain_row(name, row, index, normalize, check_sums=False, sum_hint=PYTHON_SUM_HINT):
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
            return sum_message(where, total, sum_hint)
    return None


def explain_finite(name, row, index):
    """The NaN or infinity in a row that must be finite (logits), or None."""
    row = np.asarray(row, dtype=np.float64)
    if np.isfinite(row).all():
        return None
    return explain_row(name, row, index, False)


def explain_measure_row(names, rows, index, normalize, check_sums):
    """Why the measure kernel rejected a row: ``rows`` holds that row of each
    input (p, or p and q) as given, ``names`` their names."""
    for name, row in zip(names, rows):
        message = explain_row(name, row, index, normalize, check_sums)
        if message:
            return message
    if check_sums and not normalize:
        # the kernel's sum and numpy's differ in the last bits: at the
        # tolerance's edge, name the row whose sum is further from 1
        totals = [(name, float(np.sum(row, dtype=float))) for name, row in zip(names, rows)]
        name, total = max(totals, key=lambda name_total: abs(name_total[1] - 1))
        return sum_message(f"{name}: row {index}", total)
    return None


def explain_form_row(name, form, row, index, normalize, check_sums):
    """The problem with one row of one input in ``form``, or None (a sum
    just past the tolerance is found by the caller)."""
    if form == "probs":
        message = explain_row(name, row, index, normalize, check_sums)
        if message is None and not normalize:
            with np.errstate(over="ignore"):
                if not math.isfinite(np.asarray(row, np.float64).sum()):
                    message = f"{name}: row {index} sum overflows"
        return message
    row = np.asarray(row, dtype=np.float64)
    where = f"{name}: row {index}"
    if np.isnan(row).any():
        return f"{where} contains NaN (at position {int(np.flatnonzero(np.isnan(row))[0])})"
    if form == "logits":
        if (row == math.inf).any():
            return (f"{where} contains +inf at position {int(np.flatnonzero(row == math.inf)[0])}"
                    f" (a logit may be -inf, a class of probability 0, but not +inf)")
        if not (row > -math.inf).any():
            return f"{where} has no finite logit (every entry is -inf)"
        return None
    if (row > LOG_PROB_MAX).any():
        j = int(np.flatnonzero(row > LOG_PROB_MAX)[0])
        return (f"{where} has a log-probability above 0 ({float(row[j])!r}) at position {j}: "
                f"a probability above 1; pass input='logits' for log-values that are not "
                f"normalized")
    if check_sums:
        total = float(np.exp(row).sum())
        if not abs(total - 1.0) <= SUM_TOLERANCE:
            return log_sum_message(where, total)
    return None


def log_sum_message(where, total):
    return (f"{where}: the exps of its log-probabilities sum to {total:.10g}, not 1 "
            f"(tolerance {SUM_TOLERANCE:g}): it is not a distribution; pass normalize=True "
            f"(or input='logits') to normalize each row, or check_sums=False to score the "
            f"rows as they are")


def explain_forms_row(names, forms, rows, read, index, normalize, check_sums, dtype):
    """Why the forms kernel rejected a row: ``rows`` holds that row of each
    input as given, ``read`` as the kernel read them (converted to ``dtype``,
    where a value can overflow to infinity); ``forms`` the inputs' forms."""
    for given, tail in ((rows, ""), (read, f" after conversion to {dtype}")):
        for name, form, row in zip(names, forms, given):
            message = explain_form_row(name, form, row, index, normalize, check_sums)
            if message:
                return message + tail
    if check_sums:
        # the kernel's sum and numpy's differ in the last bits: at the
        # tolerance's edge, name the row whose sum is further from 1
        totals = [(name, form, float(np.sum(row, dtype=float) if form == "probs"
                                     else np.exp(np.asarray(row, float)).sum()))
                  for name, form, row in zip(names, forms, rows)
                  if form == "log_probs" or (form == "probs" and not normalize)]
        if totals:
            name, form, total = max(totals, key=lambda item: abs(item[2] - 1))
            where = f"{name}: row {index}"
            return sum_message(where, total) if form == "probs" else log_sum_message(where, total)
    return None


def sum_message(where, total, hint=PYTHON_SUM_HINT):
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
            message = explain_row(name, row, index, normalize, check_sums, sum_hint)
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
