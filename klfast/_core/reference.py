"""The slow twin of klfast: the documented formulas in plain NumPy float64.

Used only as an oracle by the tests and benchmarks. It is written to be
obviously correct, not fast: it broadcasts the inputs into full arrays, builds
every term and sums along ``axis``. It never calls klfast.

The epsilon rule, with ``p~ = max(p, eps)`` and ``q~ = max(q, eps)``::

    kl            = sum p * log(p~ / q~)          terms with p == 0 are 0
    jeffreys      = sum (p - q) * log(p~ / q~)    terms with p == q are 0
    entropy       = -sum p * log(p~)              terms with p == 0 are 0
    cross_entropy = -sum p * log(q~)              terms with p == 0 are 0

``normalize=True`` divides each row by its sum first; ``base`` divides the
natural-log result by ``log(base)``. Jensen-Shannon is scipy's ``rel_entr``
against the midpoint, clamped at 0 (``distance=True``: its square root).

Every function has klfast's signature. The inputs are checked as klfast
documents (the same conditions, not the same messages): a negative, NaN or
infinite entry, shapes that do not broadcast or differ along ``axis``, and,
unless ``normalize=True`` or ``check_sums=False``, a row of ``p`` or ``q``
whose sum is not within ``SUM_TOLERANCE`` (1e-3) of 1 are ValueErrors naming
the input. ``num_threads`` is accepted and ignored; ``out`` is filled with the
result and returned.

Inputs given as log-probabilities or logits (``input=``, ``temperature=``)
are scored by ``forms_rows`` with mpmath at 40 digits from their exact
log-probabilities, with the eps rule in log form (log p~ = max(log p, log eps)).

The losses ``kl_loss`` and ``cross_entropy_loss`` follow klfast/_core/losses.py:
``log q = log_softmax(z / T)`` (log1p of the exps besides the maximum), ``p``
the target (or ``softmax(t / T)`` for a target of logits, ``exp(t)`` for
log-probabilities), terms with ``p == 0`` are 0,
gradient ``(sum(p) * q - p) / T``, divided by the number of rows for
``reduction="mean"``. float32 logits: the target is rounded to float32 first,
as klfast converts it; logits / T must be finite in float64.

``where=`` (every function): the rows it includes are scored alone, the
others are never looked at; their result is NaN (or left as it was in
``out``), a loss's mean is over the rows included, their gradient rows are 0.

Inputs are converted to float64 (float32 inputs apply ``eps`` rounded to
float32, as klfast does) and every result, loss and gradient is float64,
whatever the input dtype.
"""
import functools
import inspect
import math

import numpy as np

DEFAULT_EPS = 1e-12
SUM_TOLERANCE = 1e-3  # klfast.SUM_TOLERANCE (tests check they agree)


def _as_float64(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _is_float32(*arrays):
    """True when klfast computes these inputs in float32 (float16/float32 only)."""
    dt = np.result_type(*[np.asarray(a) for a in arrays])
    return dt.kind == "f" and dt.itemsize <= 4


def _check_eps(eps, float32):
    """eps >= 0 and finite; float32 inputs apply eps rounded to float32."""
    eps = float(eps)
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if float32:
        with np.errstate(over="ignore"):
            eps = float(np.float32(eps))
        if not math.isfinite(eps):
            raise ValueError("eps is beyond float32's range")
    return eps


def _check_base(base):
    if base is not None and not (math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be finite, > 0 and != 1, got {base}")


def _check_rows(x, name, axis, normalize, check_sums):
    """The documented validity rules for one input (rows along ``axis``)."""
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(x < 0):
        raise ValueError(f"{name} has a negative entry")
    with np.errstate(over="ignore"):
        sums = x.sum(axis=axis)
    if normalize:
        if np.any(sums == 0):
            raise ValueError(f"{name} has a row that sums to 0")
        if not np.all(np.isfinite(sums)):
            raise ValueError(f"{name} has a row whose sum overflows")
    elif check_sums and not np.all(np.abs(sums - 1.0) <= SUM_TOLERANCE):
        raise ValueError(f"{name} has a row that does not sum to 1 within {SUM_TOLERANCE}")


def _prepare(p, q, axis, normalize, check_sums):
    """float64 arrays of one broadcast shape, checked, normalized along ``axis``
    if asked."""
    p = _as_float64(p, "p")
    q = p if q is None else _as_float64(q, "q")
    ndim = max(p.ndim, q.ndim)
    if ndim == 0:
        raise ValueError("p and q must have at least one dimension")
    p = p.reshape((1,) * (ndim - p.ndim) + p.shape)
    q = q.reshape((1,) * (ndim - q.ndim) + q.shape)
    if p.shape[axis] != q.shape[axis]:
        raise ValueError("p and q must have the same length along axis")
    p, q = np.broadcast_arrays(p, q)  # ValueError when they do not broadcast
    for x, name in ((p, "p"), (q, "q")):
        _check_rows(x, name, axis, normalize, check_sums)
    if normalize:
        p = p / p.sum(axis=axis, keepdims=True)
        q = q / q.sum(axis=axis, keepdims=True)
    return p, q


def _log_ratio(a, b):
    """log(a / b) elementwise, falling back to log(a) - log(b) where a / b
    overflows or underflows (subnormal b or a); +-inf where a or b is 0.
    Where a / b is within [1/2, 2], log1p((a - b) / b): a - b is exact there
    (Sterbenz), so the result keeps its relative accuracy when a and b are
    close (log(a / b) rounds the ratio first: an error of up to 1.1e-16 on a
    log of, say, 1e-5)."""
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        ratio = a / b
        direct = np.where((ratio >= 0.5) & (ratio <= 2.0), np.log1p((a - b) / b),
                          np.log(ratio))
        split = np.log(a) - np.log(b)
    ok = (ratio > 0) & np.isfinite(ratio) & (ratio >= np.finfo(np.float64).tiny)
    return np.where(ok, direct, split)


def _finish(terms, axis, base, keepdims, out):
    """Sum the terms along ``axis``, convert to ``base``, fill ``out``."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(terms, axis=axis, keepdims=keepdims)
    if base is not None:
        total = total / np.log(float(base))
    return _fill(total, out)


def _fill(result, out):
    if out is None:
        return result
    if out.shape != np.shape(result):
        raise ValueError(f"out has shape {out.shape}, expected {np.shape(result)}")
    out[...] = result
    return out


def kl(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
       keepdims=False, out=None, num_threads=None, input="probs",
       temperature=1.0):
    """KL(p || q) of each row: sum p * log(p~ / q~), terms with p == 0 are 0."""
    if not _plain(input, temperature):
        return _forms("kl", (p, q), input, temperature, eps, axis, base, normalize,
                      check_sums, keepdims, out)
    eps = _check_eps(eps, _is_float32(p, q))
    _check_base(base)
    p, q = _prepare(p, q, axis, normalize, check_sums)
    with np.errstate(invalid="ignore"):
        terms = p * _log_ratio(np.maximum(p, eps), np.maximum(q, eps))
    terms = np.where(p == 0, 0.0, terms)
    return _finish(terms, axis, base, keepdims, out)


def jeffreys(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
             keepdims=False, out=None, num_threads=None, input="probs",
             temperature=1.0):
    """J(p, q) of each row: sum (p - q) * log(p~ / q~), terms with p == q are 0."""
    if not _plain(input, temperature):
        return _forms("jeffreys", (p, q), input, temperature, eps, axis, base, normalize,
                      check_sums, keepdims, out)
    eps = _check_eps(eps, _is_float32(p, q))
    _check_base(base)
    p, q = _prepare(p, q, axis, normalize, check_sums)
    with np.errstate(invalid="ignore"):
        terms = (p - q) * _log_ratio(np.maximum(p, eps), np.maximum(q, eps))
    terms = np.where(p == q, 0.0, terms)
    return _finish(terms, axis, base, keepdims, out)


def entropy(p, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False, check_sums=True,
            keepdims=False, out=None, num_threads=None, input="probs",
            temperature=1.0):
    """H(p) of each row: -sum p * log(p~), terms with p == 0 are 0."""
    if not _plain(input, temperature):
        return _forms("entropy", (p,), input, temperature, eps, axis, base, normalize,
                      check_sums, keepdims, out)
    eps = _check_eps(eps, _is_float32(p))
    _check_base(base)
    p, _ = _prepare(p, None, axis, normalize, check_sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -p * np.log(np.maximum(p, eps))
    terms = np.where(p == 0, 0.0, terms)
    return _finish(terms, axis, base, keepdims, out)


def cross_entropy(p, q, *, axis=-1, eps=DEFAULT_EPS, base=None, normalize=False,
                  check_sums=True, keepdims=False, out=None, num_threads=None, input="probs",
                  temperature=1.0):
    """H(p, q) of each row: -sum p * log(q~), terms with p == 0 are 0."""
    if not _plain(input, temperature):
        return _forms("cross_entropy", (p, q), input, temperature, eps, axis, base, normalize,
                      check_sums, keepdims, out)
    eps = _check_eps(eps, _is_float32(p, q))
    _check_base(base)
    p, q = _prepare(p, q, axis, normalize, check_sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -p * np.log(np.maximum(q, eps))
    terms = np.where(p == 0, 0.0, terms)
    return _finish(terms, axis, base, keepdims, out)


def jensen_shannon(p, q, *, axis=-1, base=None, normalize=False, check_sums=True,
                   distance=False, keepdims=False, out=None, num_threads=None, input="probs",
                   temperature=1.0):
    """(KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, by scipy's rel_entr
    (0 where an entry is 0), clamped at 0; ``distance`` takes its square root."""
    if not _plain(input, temperature):
        return _forms("jensen_shannon", (p, q), input, temperature, 0.0, axis, base, normalize,
                      check_sums, keepdims, out, distance)
    from scipy.special import rel_entr

    _check_base(base)
    if distance and base is not None and base < 1:
        raise ValueError("distance=True needs base > 1 (or None)")
    p, q = _prepare(p, q, axis, normalize, check_sums)
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (rel_entr(p, m) + rel_entr(q, m)) / 2
    value = np.maximum(_finish(terms, axis, None, keepdims, None), 0.0)
    if base is not None:
        value = value / np.log(base)
    return _fill(np.sqrt(value) if distance else value, out)


# --- inputs in any form: input=, temperature= (mpmath) ---------------------------

FORMS = ("probs", "log_probs", "logits")
LOG_PROB_MAX = math.log1p(SUM_TOLERANCE)  # the largest log-probability accepted


def _plain(input, temperature):
    return isinstance(input, str) and input == "probs" and temperature == 1.0


def _check_form_rows(x, name, form, normalize, check_sums):
    """The documented validity rules of one input in ``form`` (rows along
    the last axis)."""
    if form == "probs":
        _check_rows(x, name, -1, normalize, check_sums)
        return
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    if form == "logits":
        if (x == np.inf).any():
            raise ValueError(f"{name} contains +inf")
        if not (x > -np.inf).any(axis=-1).all():
            raise ValueError(f"{name} has a row whose logits are all -inf")
        return
    if (x > LOG_PROB_MAX).any():
        raise ValueError(f"{name} has a log-probability above 0")
    if check_sums and not normalize:
        if not (np.abs(np.exp(x).sum(axis=-1) - 1.0) <= SUM_TOLERANCE).all():
            raise ValueError(f"{name} has a row whose exps do not sum to 1")


def _exact_logs(row, form, temperature, normalize):
    """The exact natural logs of one row's probabilities (mpmath numbers)."""
    import mpmath

    x = [mpmath.mpf(float(v)) for v in row]
    if form == "probs":
        if normalize:
            total = mpmath.fsum(x)
            x = [v / total for v in x]
        return [mpmath.log(v) if v > 0 else -mpmath.inf for v in x]
    if form == "logits":
        x = [v / mpmath.mpf(temperature) for v in x]
    if form == "logits" or normalize:  # the log-softmax; log1p keeps a tiny rest's digits
        top = max(x)
        rest = mpmath.fsum(mpmath.exp(v - top) for v in x if v != top)
        log_rest = mpmath.log1p(sum(1 for v in x if v == top) - 1 + rest)
        x = [(v - top) - log_rest for v in x]
    return x


def forms_rows(measure, p, q, forms, *, temperature=1.0, eps=DEFAULT_EPS, normalize=False):
    """Each row's ``measure`` of 2-D float64 rows ``p`` and ``q`` (``q``
    ignored for the entropy) in their ``forms``, computed with mpmath at 40
    digits from the exact log-probabilities (the eps rule in log form:
    log p~ = max(log p, log eps)), and the row's scale
    ``sum_j (p_j (1 + |log p_j|) + q_j (1 + |log q_j|)) (|log p~_j| + |log q~_j|)``
    (terms of weight 0 left out; for Jensen-Shannon the logs unfloored,
    infinite ones left out), which bounds what rounding costs: a log carries
    an error of about |log| ulp, and so does the relative error of the
    probability exp(log p) made from it. Returns two float64 arrays."""
    import mpmath

    values, scales = [], []
    with mpmath.workdps(40):
        log_eps = mpmath.log(mpmath.mpf(eps)) if eps > 0 else -mpmath.inf
        for i in range(p.shape[0]):
            lp = _exact_logs(p[i], forms[0], temperature, normalize)
            lq = lp if measure == "entropy" else \
                _exact_logs(q[i], forms[-1], temperature, normalize)
            total, scale = mpmath.mpf(0), mpmath.mpf(0)
            for a_log, b_log in zip(lp, lq):
                a, b = mpmath.exp(a_log), mpmath.exp(b_log)
                weight = sum(w * (1 + abs(w_log)) for w, w_log in ((a, a_log), (b, b_log))
                             if w > 0)
                if measure == "jensen_shannon":
                    m_log = mpmath.log((a + b) / 2) if a + b > 0 else -mpmath.inf
                    for w, w_log in ((a, a_log), (b, b_log)):
                        if w > 0:
                            total += w * (w_log - m_log) / 2
                    logs = [abs(v) for v in (a_log, b_log) if mpmath.isfinite(v)]
                else:
                    a_log, b_log = max(a_log, log_eps), max(b_log, log_eps)
                    if measure == "kl" and a > 0:
                        total += a * (a_log - b_log)
                    elif measure == "jeffreys" and a != b:
                        total += (a - b) * (a_log - b_log)
                    elif measure == "entropy" and a > 0:
                        total -= a * a_log
                    elif measure == "cross_entropy" and a > 0:
                        total -= a * b_log
                    logs = [abs(a_log), abs(b_log)]
                if weight > 0:
                    scale += weight * sum(logs)
            values.append(float(max(total, 0) if measure == "jensen_shannon" else total))
            scales.append(float(scale))
    return np.array(values), np.array(scales)


def _forms(measure, inputs, input, temperature, eps, axis, base, normalize, check_sums,
           keepdims, out, distance=False):
    """The public functions' path for inputs that are not all probabilities."""
    names = ("p", "q")[:len(inputs)]
    forms = (input,) * len(inputs) if isinstance(input, str) else tuple(input)
    if len(forms) != len(inputs) or not all(f in FORMS for f in forms):
        raise ValueError(f"input must name one of {FORMS} per input, got {input!r}")
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if temperature != 1.0 and "logits" not in forms:
        raise ValueError("temperature divides logits, but no input is logits")
    float32 = _is_float32(*inputs)
    eps = _check_eps(eps, float32)
    _check_base(base)
    arrays = [_as_float64(x, name) for x, name in zip(inputs, names)]
    ndim = max(x.ndim for x in arrays)
    if ndim == 0:
        raise ValueError("p and q must have at least one dimension")
    arrays = [np.moveaxis(x.reshape((1,) * (ndim - x.ndim) + x.shape), axis, -1)
              for x in arrays]
    if len({x.shape[-1] for x in arrays}) > 1:
        raise ValueError("p and q must have the same length along axis")
    arrays = np.broadcast_arrays(*arrays)
    for x, name, form in zip(arrays, names, forms):
        _check_form_rows(x, name, form, normalize, check_sums)
    outer, k = arrays[0].shape[:-1], arrays[0].shape[-1]
    rows = [x.reshape(-1, k) for x in arrays]
    values, _ = forms_rows(measure, rows[0], rows[-1], forms, temperature=temperature, eps=eps,
                           normalize=normalize)
    total = values.reshape(outer)
    if base is not None:
        total = total / np.log(float(base))
    if distance:
        total = np.sqrt(total)
    if keepdims:
        total = np.expand_dims(total, axis)
    return _fill(total, out)


def _rows_of(arrays, axis):
    """The inputs broadcast to (outer..., k), the distributions last."""
    arrays = [np.asarray(a) for a in arrays]
    ndim = max(a.ndim for a in arrays)
    arrays = [np.moveaxis(a.reshape((1,) * (ndim - a.ndim) + a.shape), axis, -1)
              for a in arrays]
    outer = np.broadcast_shapes(*(a.shape[:-1] for a in arrays))
    return [np.broadcast_to(a, outer + a.shape[-1:]) for a in arrays], outer


def _with_where(fn, n_inputs, loss=False):
    """``fn`` with klfast's ``where=``: the rows included, selected and scored
    alone by ``fn``, put back in place."""
    @functools.wraps(fn)
    def scored(*args, where=None, **kwargs):
        if where is None:
            return fn(*args, **kwargs)
        axis = kwargs.pop("axis", -1)
        arrays, outer = _rows_of(args[:n_inputs], axis)
        mask = np.broadcast_to(np.asarray(where, dtype=bool), outer)
        chosen = [a[mask] for a in arrays]
        if loss:
            reduction = kwargs.get("reduction", "mean")
            return_grad = kwargs.get("return_grad", False)
            result = fn(*chosen, *args[n_inputs:], **kwargs)
            value, grad = result if return_grad else (result, None)
            if reduction == "none":
                value = _scatter(value, mask, outer)
            if not return_grad:
                return value
            full = np.zeros(outer + arrays[-1].shape[-1:])
            full[mask] = grad
            return value, np.moveaxis(full, -1, axis)
        out, keepdims = kwargs.pop("out", None), kwargs.pop("keepdims", False)
        rows = _scatter(fn(*chosen, *args[n_inputs:], **kwargs), mask, outer)
        if keepdims:
            rows, mask = np.expand_dims(rows, axis), np.expand_dims(mask, axis)
        if out is None:
            return rows
        np.copyto(out, rows, where=mask)
        return out

    params = list(inspect.signature(fn).parameters.values())
    where_param = inspect.Parameter("where", inspect.Parameter.KEYWORD_ONLY, default=None)
    scored.__signature__ = inspect.Signature(params + [where_param])
    return scored


def _scatter(values, mask, outer):
    rows = np.full(outer, np.nan)
    rows[mask] = values
    return rows


kl, jeffreys, cross_entropy, jensen_shannon = (
    _with_where(f, 2) for f in (kl, jeffreys, cross_entropy, jensen_shannon))
entropy = _with_where(entropy, 1)

MEASURES = {"kl": kl, "jeffreys": jeffreys, "entropy": entropy, "cross_entropy": cross_entropy,
            "jensen_shannon": jensen_shannon}


# --- losses from logits ------------------------------------------------------

def _log_softmax(x):
    """log_softmax along the last axis, as scipy's but with log1p of the
    exps besides the maximum: their sum keeps its digits when it is below
    one ulp of 1 (a one-hot-like row)."""
    with np.errstate(invalid="ignore"):
        d = x - x.max(axis=-1, keepdims=True)
    top = d == 0
    rest = np.where(top, 0.0, np.exp(d)).sum(axis=-1, keepdims=True)
    return d - np.log1p(top.sum(axis=-1, keepdims=True) - 1 + rest)


def _loss(loss, target, logits, temperature, target_is_logits, reduction, return_grad, eps,
          axis, input=None):
    """Per-row loss and gradient by the log-softmax, reduced as asked.
    ``input``: (target form, "logits"), or None for ``target_is_logits``."""
    form = ("logits" if target_is_logits else "probs") if input is None else \
        ((input,) * 2 if isinstance(input, str) else tuple(input))[0]
    if input is not None and (tuple((input,) * 2 if isinstance(input, str) else input)
                              != (form, "logits") or form not in FORMS
                              or (target_is_logits and form != "logits")):
        raise ValueError(f"input must be (target form, 'logits'), got {input!r}")

    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    float32 = _is_float32(logits)
    eps = _check_eps(eps, float32)
    z = _as_float64(logits, "logits")
    t = np.asarray(target)
    if float32:  # klfast converts the target to the logits' dtype
        t = _as_float64(t, "target").astype(np.float32)
    t = _as_float64(t, "target")
    if z.ndim == 0:
        raise ValueError("logits must have at least one dimension")
    if t.ndim > z.ndim:
        raise ValueError("target has more dimensions than logits")
    t = t.reshape((1,) * (z.ndim - t.ndim) + t.shape)
    if t.shape[axis] != z.shape[axis]:
        raise ValueError("target and logits must have the same length along axis")
    t = np.broadcast_to(t, z.shape)  # ValueError when target does not broadcast to logits
    z = np.moveaxis(z, axis, -1)
    t = np.moveaxis(t, axis, -1)
    _check_form_rows(z, "logits", "logits", False, False)
    if form == "probs":
        if not np.all(np.isfinite(t)):
            raise ValueError("target contains NaN or inf")
        if np.any(t < 0):
            raise ValueError("target has a negative entry")
    else:
        _check_form_rows(t, "target", form, False, False)

    log_q = _log_softmax(z / temperature)
    if form != "probs":
        log_p = _log_softmax(t / temperature) if form == "logits" else t
        p = np.exp(log_p)
        log_p_floored = np.where(p > eps, log_p, np.log(eps) if eps > 0 else -np.inf)
    else:
        p = t
        with np.errstate(divide="ignore"):
            log_p_floored = np.log(np.maximum(p, eps))
    with np.errstate(invalid="ignore"):
        if loss == "kl":
            terms = p * (log_p_floored - log_q)
        else:
            terms = -p * log_q
    rows = np.sum(np.where(p == 0, 0.0, terms), axis=-1)
    grad = (p.sum(axis=-1, keepdims=True) * np.exp(log_q) - p) / temperature

    n_rows = rows.size
    if reduction == "none":
        value = rows[()] if rows.ndim == 0 else rows
    elif reduction == "sum":
        value = np.float64(rows.sum())
    else:
        value = np.float64(rows.sum() / n_rows) if n_rows else np.float64(np.nan)
        if n_rows:
            grad = grad / n_rows
    return (value, np.moveaxis(grad, -1, axis)) if return_grad else value


def _with_grad_out(result, return_grad, grad_out):
    """The result, its gradient copied into ``grad_out`` when one is given."""
    if grad_out is None:
        return result
    if not return_grad:
        raise ValueError("grad_out needs return_grad=True")
    value, grad = result
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"grad_out must be a numpy.ndarray, got {type(grad_out).__name__}")
    if grad_out.shape != grad.shape:
        raise ValueError(f"grad_out has shape {grad_out.shape}, expected {grad.shape}")
    grad_out[...] = grad
    return value, grad_out


def kl_loss(target, logits, *, input=None, temperature=1.0, target_is_logits=False,
            reduction="mean", return_grad=False, eps=DEFAULT_EPS, axis=-1, num_threads=None,
            grad_out=None):
    """KL(p || softmax(logits / T)) per row, reduced; with ``return_grad`` also
    d(loss)/d(logits) = (S q - p) / T (S = sum p; divided by the rows for "mean"),
    written into ``grad_out`` when one is given."""
    return _with_grad_out(_loss("kl", target, logits, temperature, target_is_logits, reduction,
                                return_grad, eps, axis, input), return_grad, grad_out)


def cross_entropy_loss(target, logits, *, input=None, temperature=1.0, target_is_logits=False,
                       reduction="mean", return_grad=False, eps=DEFAULT_EPS, axis=-1,
                       num_threads=None, grad_out=None):
    """-sum p * log_softmax(logits / T) per row, reduced; the gradient of kl_loss."""
    return _with_grad_out(_loss("cross_entropy", target, logits, temperature, target_is_logits,
                                reduction, return_grad, eps, axis, input), return_grad, grad_out)


kl_loss, cross_entropy_loss = (_with_where(f, 2, loss=True)
                               for f in (kl_loss, cross_entropy_loss))

LOSSES = {"kl": kl_loss, "cross_entropy": cross_entropy_loss}


def jensen_shannon_rows(p, q):
    """Jensen-Shannon of each row of 2-D p, q by a formula that keeps the
    digits of nearly equal rows: per element m f(t), t = (p - q)/(p + q),
    f(t) = t atanh(t) + log1p(-t^2)/2, whose two parts do not cancel; each
    row summed with math.fsum. Entries must be positive."""
    import math
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m, t = (p + q) / 2, (p - q) / (p + q)
    return np.array([math.fsum(r) for r in m * (t * np.arctanh(t) + np.log1p(-t * t) / 2)])


SUMMARY_PERCENTILES = (1.0, 5.0, 50.0, 95.0, 99.0, 99.9)


def summary(scores, *, where=None, top1_agree=None):
    """klfast.summary's statistics from their definitions, as a dict of its
    fields: the mean and the variance as exact fractions (the variance about
    the exact mean, so a few ulps from klfast's, which squares the deviations
    from the rounded mean), percentiles by ``np.percentile`` (for infinite
    neighbours: the limit of its interpolation), the first index of the max.
    -0.0 counts as 0.0. NaN scores are a ValueError."""
    from fractions import Fraction

    x = np.asarray(scores, dtype=np.float64).reshape(-1) + 0.0
    include = np.ones(x.shape, bool) if where is None else \
        np.broadcast_to(np.asarray(where, bool), np.shape(scores)).reshape(-1)
    values = x[include]
    if np.isnan(values).any():
        raise ValueError("scores: NaN")
    n = len(values)
    top1 = None if top1_agree is None else np.broadcast_to(
        np.asarray(top1_agree, bool), np.shape(scores)).reshape(-1)[include]
    result = {"count": n, "top1_agreement": None if top1 is None else
              (int(top1.sum()) / n if n else math.nan)}
    if n == 0:
        return {**result, "mean": math.nan, "stderr": math.nan, "min": math.nan,
                "max": math.nan, "argmax": None,
                **{name: math.nan for name in ("p1", "p5", "median", "p95", "p99", "p99_9")}}
    if np.isinf(values).any():
        has_pos, has_neg = (values == math.inf).any(), (values == -math.inf).any()
        mean = math.nan if has_pos and has_neg else (math.inf if has_pos else -math.inf)
        stderr = math.nan
    else:
        exact_mean = sum(map(Fraction, values.tolist())) / n
        mean = float(exact_mean)
        if n == 1:
            stderr = math.nan
        else:
            variance = sum((Fraction(v) - exact_mean) ** 2 for v in values.tolist()) / (n - 1)
            ratio = variance / n  # may be above the float range; its square root is not
            half = max(0, (ratio.numerator.bit_length() - ratio.denominator.bit_length()) // 2
                       - 500)
            stderr = math.ldexp(math.sqrt(float(ratio / 4 ** half)), half)
    ordered = np.sort(values)
    percentiles = []
    for q in SUMMARY_PERCENTILES:
        if np.isfinite(values).all():
            percentiles.append(float(np.percentile(values, q)))
            continue
        h = (n - 1) * (q / 100)
        lo = int(math.floor(h))
        a, b = ordered[lo], ordered[min(lo + 1, n - 1)]
        if h - lo == 0 or a == b:
            percentiles.append(float(a))
        elif np.isinf(a) and np.isinf(b):
            percentiles.append(math.nan)
        else:
            t = h - lo  # numpy's _lerp, for the finite neighbours of an infinite score
            percentiles.append(float(a if np.isinf(a) else b if np.isinf(b)
                                     else b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t))
    masked = np.where(include, x, -math.inf)
    argmax = int(np.flatnonzero(include & (masked == values.max()))[0])
    return {**result, "mean": mean, "stderr": stderr, "min": float(values.min()),
            "max": float(values.max()), "argmax": argmax,
            **dict(zip(("p1", "p5", "median", "p95", "p99", "p99_9"), percentiles))}
