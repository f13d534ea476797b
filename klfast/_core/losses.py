"""Losses from logits, with gradients: KL divergence and cross-entropy."""
import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from .. import _kernels, _loss_kernels
from .measures import BLOCK_ELEMENTS, _kernel_ready, _resolve_threads
from .validate import (
    DEFAULT_EPS,
    as_input,
    check_axis,
    check_eps,
    check_flag,
    check_num_threads,
    check_reduction,
    check_temperature,
    check_temperature_dtype,
    explain_loss_row,
    logits_dtype,
)

_LOSSES = _loss_kernels.LOSSES
# The loss kernels run at the instruction-set level klfast._kernels uses now
# (klfast._kernels.set_isa, KLFAST_ISA), looked up on every call.
_LEVEL_INDEX = {name: i for i, name in enumerate(_loss_kernels.LEVELS)}
if _loss_kernels.LEVELS != _kernels.LEVELS:  # one build makes both
    raise ImportError(f"klfast: loss kernel levels {_loss_kernels.LEVELS} differ from "
                      f"{_kernels.LEVELS}; reinstall klfast")


def _reduce_rows(rows, reduction):
    """The sum or the mean of the per-row values (float64). Finite rows whose
    sum overflows are summed again scaled by 2^-64: a mean of finite rows is
    finite, a sum is +-inf only when it is past the float64 range."""
    n_rows = rows.size
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(rows.sum())
        if not math.isfinite(total) and np.isfinite(rows).all():
            scaled = float(np.ldexp(rows, -64).sum())
            return (scaled if reduction == "sum" else scaled / n_rows) * 2.0 ** 64
    if reduction == "sum":
        return total
    return total / n_rows if n_rows else math.nan


class _LossJob:
    """One call: the loss, its parameters and the outer shape of the rows."""

    __slots__ = ("loss", "inv_temperature", "target_is_logits", "eps", "grad_scale",
                 "num_threads", "dtype", "outer", "level")

    def __init__(self, loss, inv_temperature, target_is_logits, eps, grad_scale, num_threads,
                 dtype, outer):
        self.level = _LEVEL_INDEX[_kernels.get_isa()]
        self.loss = loss
        self.inv_temperature = inv_temperature
        self.target_is_logits = target_is_logits
        self.eps = eps
        self.grad_scale = grad_scale
        self.num_threads = num_threads
        self.dtype = dtype
        self.outer = outer

    def _kernel(self, t, t_rs, z, grad, out, n_rows, k, threads):
        return _loss_kernels.loss_rows(
            self.loss, t, t_rs, z, z.strides[0] if n_rows > 1 else 0,
            grad, 0 if grad is None or n_rows <= 1 else grad.strides[0],
            out, n_rows, k, self.inv_temperature, self.target_is_logits, self.eps,
            self.grad_scale, threads, self.level)

    def run_2d(self, t, z, grad, out, first_row):
        """Rows of the 2-D views ``t``, ``z`` (n_rows, k) into the contiguous
        float64 ``out`` (n_rows,) and, unless None, the 2-D view ``grad``."""
        n_rows, k = z.shape
        dt = self.dtype
        if n_rows == 0:
            return
        t_fixed = self._fixed_row(t)
        grad_ok = grad is None or (_kernel_ready(grad, dt) and grad.flags.writeable)
        direct = (t_fixed is not None or _kernel_ready(t, dt)) and _kernel_ready(z, dt)
        if direct and grad_ok:
            tb = t_fixed if t_fixed is not None else t
            t_rs = 0 if t_fixed is not None or n_rows <= 1 else t.strides[0]
            bad = self._kernel(tb, t_rs, z, grad, out, n_rows, k,
                               _resolve_threads(self.num_threads, n_rows, k))
            if bad:
                self._raise(t, z, tb, z, out, first_row)
            return
        # Convert per block of rows into bounded buffers, never the whole input.
        block = max(1, BLOCK_ELEMENTS // max(k, 1))
        for r0 in range(0, n_rows, block):
            r1 = min(n_rows, r0 + block)
            with np.errstate(over="ignore"):  # values beyond float32 are reported below
                tb = t_fixed if t_fixed is not None else np.ascontiguousarray(t[r0:r1], dtype=dt)
                zb = np.ascontiguousarray(z[r0:r1], dtype=dt)
            gb = None
            if grad is not None:
                gb = grad[r0:r1] if grad_ok else np.empty((r1 - r0, k), dtype=dt)
            bad = self._kernel(tb, 0 if t_fixed is not None or r1 - r0 <= 1 else tb.strides[0],
                               zb, gb, out[r0:r1], r1 - r0, k,
                               _resolve_threads(self.num_threads, r1 - r0, k))
            if bad:
                self._raise(t[r0:r1], z[r0:r1], tb, zb, out[r0:r1], first_row + r0)
            if grad is not None and not grad_ok:
                grad[r0:r1] = gb

    def _fixed_row(self, t):
        """The single row of a broadcast target, converted; None otherwise."""
        if t.shape[0] > 1 and t.strides[0] == 0:
            with np.errstate(over="ignore"):
                return np.ascontiguousarray(t[:1], dtype=self.dtype)
        return None

    def _raise(self, t, z, t_conv, z_conv, out, first_row):
        local = int(np.flatnonzero(np.isnan(out))[0])
        flat = first_row + local
        index = np.unravel_index(flat, self.outer) if len(self.outer) > 1 else flat
        if isinstance(index, tuple):
            index = tuple(int(i) for i in index)
        message = explain_loss_row((t[local], z[local]),
                                   (t_conv[0 if t_conv.shape[0] == 1 else local], z_conv[local]),
                                   index, self.target_is_logits, self.dtype)
        if message:
            raise ValueError(message)
        raise RuntimeError(f"klfast: row {index} gave NaN from valid input; please report this")


def _run_nd(job, t, z, grad, out, first_row=0):
    """Split N-D views (outer..., k) into 2-D problems without copies."""
    outer = z.shape[:-1]
    n_rows = math.prod(outer)
    k = z.shape[-1]
    try:
        t2 = t.reshape(n_rows, k, copy=False)
        z2 = z.reshape(n_rows, k, copy=False)
        g2 = None if grad is None else grad.reshape(n_rows, k, copy=False)
        o1 = out.reshape(n_rows, copy=False)
    except ValueError:  # strides that do not collapse: one level down
        step = n_rows // outer[0] if outer[0] else 0
        for i in range(outer[0]):
            _run_nd(job, t[i], z[i], None if grad is None else grad[i], out[i],
                    first_row + i * step)
        return
    job.run_2d(t2, z2, g2, o1, first_row)


def _loss(loss, target, logits, temperature, target_is_logits, reduction, return_grad, eps,
          axis, num_threads):
    temperature = check_temperature(temperature)
    reduction = check_reduction(reduction)
    target_is_logits = check_flag(target_is_logits, "target_is_logits")
    return_grad = check_flag(return_grad, "return_grad")
    axis = check_axis(axis)
    eps = check_eps(eps)
    num_threads = check_num_threads(num_threads)
    target, _ = as_input(target, "target")
    logits, _ = as_input(logits, "logits")
    dtype = logits_dtype(logits)
    check_temperature_dtype(temperature, dtype)
    ndim = logits.ndim
    if ndim == 0:
        raise np.exceptions.AxisError(axis, 0, "logits must have at least one dimension")
    if target.ndim > ndim:
        raise ValueError(
            f"target shape {target.shape} does not broadcast to logits shape {logits.shape}"
        )
    ax = normalize_axis_index(axis, ndim)
    t_shape = (1,) * (ndim - target.ndim) + target.shape
    k = logits.shape[ax]
    if t_shape[ax] != k:
        raise ValueError(
            f"target and logits must have the same length along axis {axis}: "
            f"shapes {target.shape} and {logits.shape}"
        )
    try:
        full = np.broadcast_shapes(t_shape, logits.shape)
    except ValueError:
        full = None
    if full != logits.shape:
        raise ValueError(
            f"target shape {target.shape} does not broadcast to logits shape {logits.shape}"
        )
    outer = logits.shape[:ax] + logits.shape[ax + 1:]
    n_rows = math.prod(outer)

    grad = np.empty(logits.shape, dtype=dtype) if return_grad else None
    scale = 1.0 / temperature
    if reduction == "mean" and n_rows > 0:
        scale /= n_rows
    rows = np.empty(outer, dtype=np.float64)
    job = _LossJob(_LOSSES[loss], 1.0 / temperature, bool(target_is_logits), eps, scale,
                   num_threads, dtype, outer)
    t_view = np.broadcast_to(np.moveaxis(target.reshape(t_shape), ax, -1), outer + (k,))
    z_view = np.moveaxis(logits, ax, -1)
    g_view = None if grad is None else np.moveaxis(grad, ax, -1)
    _run_nd(job, t_view, z_view, g_view, rows)

    if reduction == "none":
        value = rows.astype(dtype)
        if value.ndim == 0:
            value = value[()]
    else:
        with np.errstate(over="ignore"):  # past float32's range: inf, as numpy rounds
            value = dtype.type(_reduce_rows(rows, reduction))
    return (value, grad) if return_grad else value


def kl_loss(target, logits, *, temperature=1.0, target_is_logits=False, reduction="mean",
            return_grad=False, eps=DEFAULT_EPS, axis=-1, num_threads=None):
    return _loss("kl", target, logits, temperature, target_is_logits, reduction, return_grad,
                 eps, axis, num_threads)


def cross_entropy_loss(target, logits, *, temperature=1.0, target_is_logits=False,
                       reduction="mean", return_grad=False, eps=DEFAULT_EPS, axis=-1,
                       num_threads=None):
    return _loss("cross_entropy", target, logits, temperature, target_is_logits, reduction,
                 return_grad, eps, axis, num_threads)


_DOC_PARAMS = """
    Parameters
    ----------
    target : array_like
        Target distributions, shape broadcastable to ``logits.shape`` with the
        same length along ``axis``: probabilities (non-negative, used as given,
        not normalized), or teacher logits when ``target_is_logits=True``, in
        which case ``p = softmax(target / T)``.
    logits : array_like
        Model outputs, array of shape (..., k, ...) with the classes along ``axis``.
    temperature : float, default 1.0
        ``T > 0``, finite, and large enough that ``1 / T`` is finite in the
        logits' dtype (``T`` above about 5.6e-309 for float64, 2.9e-39 for
        float32; smaller is a ValueError). Divides the logits (and teacher
        logits). The loss is
        not multiplied by ``T**2`` (distillation often does that; multiply the
        loss and grad yourself).
    target_is_logits : bool, default False
        Interpret ``target`` as logits.
    reduction : {"none", "sum", "mean"}, default "mean"
        ``"none"``: the per-row values, shape ``logits.shape`` without ``axis``.
        ``"sum"``: their sum (``inf`` only past the float64 range).
        ``"mean"``: their sum divided by the number of rows (finite for
        finite rows, even when their sum overflows) -- what torch calls ``reduction="batchmean"``. torch's own
        ``"mean"`` divides by the number of *elements* (rows times k) and is
        not the mean of the per-row divergences.
    return_grad : bool, default False
        Also return ``d(loss)/d(logits)``.
    eps : float, default klfast.DEFAULT_EPS (1e-12)
        Floor inside the log of the target: ``log(max(p, eps))``; terms with
        ``p == 0`` are exactly 0. ``q`` is never floored: ``log q`` is the
        log-softmax, finite for finite logits.
    axis : int, default -1
        Axis of ``logits`` (and ``target``) along which the classes lie.
    num_threads : int, optional
        Threads for this call; ``None`` uses :func:`klfast.default_num_threads`.
        Small inputs run on one thread. Results do not depend on it.

    Returns
    -------
    loss : ndarray or scalar
        Per-row values (array of shape ``logits.shape`` without ``axis``) for
        ``"none"``, a scalar otherwise. float32 for float16/float32 logits,
        float64 otherwise; ``target`` is converted to that dtype. exp and log
        are vectorised and computed in that dtype (about one ulp), the row
        sums accumulate in float64: float64 results are within a few ulp of
        the exact values; float32 results within about 1e-7 of
        ``1 + |loss|`` per row (so a row near 0, the KL of near-identical
        distributions, is accurate to that absolute error). ``"mean"`` of
        zero rows is NaN.
    grad : ndarray
        Only with ``return_grad=True``: array of the shape of ``logits``, dtype
        of ``loss``. Per row ``(sum(p) * softmax(z / T) - p) / T``, i.e.
        ``(softmax(z / T) - p) / T`` for target distributions, divided by the
        number of rows for ``"mean"``. For ``"none"`` row i holds the gradient
        of ``loss[i]``.

    Raises
    ------
    ValueError
        An unknown ``reduction``; ``temperature`` <= 0, not finite, or so
        small that ``1 / temperature`` overflows; a
        ``target`` that does not broadcast to ``logits``; invalid ``eps`` or
        ``num_threads``; NaN or infinite logits, or target probabilities that
        are negative, NaN or infinite (naming the input and the first
        offending row).
    TypeError
        Complex, object or string input; a non-numeric ``temperature``.
"""

kl_loss.__doc__ = """KL divergence from logits, ``KL(p || softmax(logits / T))``, per row.

    With ``log q = log_softmax(z / T)`` for a row of logits ``z``::

        kl = sum_j p_j * (log max(p_j, eps) - log q_j)     terms with p_j == 0 are 0

    The kernel reads each row three times while it is in cache (maximum,
    log-sum-exp, then loss and gradient), with vectorised exp and log at the
    instruction-set level :func:`klfast.show_config` reports, and allocates
    nothing besides the gradient. Stable for logits of magnitude 1e4 and
    temperatures from 0.1 to 100.
""" + _DOC_PARAMS + """
    See Also
    --------
    cross_entropy_loss : differs by the entropy of ``p``, with the same gradient.

    Examples
    --------
    >>> import numpy as np
    >>> import klfast
    >>> target = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    >>> klfast.kl_loss(target, logits, reduction="none").round(6)
    array([0.025448, 0.075337])
    >>> loss, grad = klfast.kl_loss(target, logits, return_grad=True)
    >>> round(float(loss), 6)
    0.050393
    >>> grad.round(4)
    array([[-0.0281,  0.0321, -0.004 ],
           [ 0.0656, -0.0857,  0.0201]])
    """

cross_entropy_loss.__doc__ = """Cross-entropy from logits, ``-sum p * log_softmax(logits / T)``, per row.

    With ``log q = log_softmax(z / T)`` for a row of logits ``z``::

        ce = -sum_j p_j * log q_j                          terms with p_j == 0 are 0

    so ``ce = kl + H(p)`` with ``H(p) = -sum p log max(p, eps)`` (see
    :func:`klfast.entropy`), and the gradient equals that of :func:`kl_loss`
    bitwise. For hard labels (one-hot ``p``), ``H(p) = 0``.
""" + _DOC_PARAMS + """
    See Also
    --------
    kl_loss : differs by the entropy of ``p``, with the same gradient.

    Examples
    --------
    >>> import numpy as np
    >>> import klfast
    >>> labels = np.eye(3)[[0, 1]]                 # hard labels as one-hot rows
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    >>> klfast.cross_entropy_loss(labels, logits, reduction="none").round(6)
    array([0.169846, 0.464369])
    >>> float(klfast.cross_entropy_loss(labels, logits, temperature=2.0, reduction="sum").round(6))
    1.196206
    """
