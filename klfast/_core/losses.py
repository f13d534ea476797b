"""Losses from logits, with gradients: kl_loss and cross_entropy_loss. Each
checks its arguments, resolves axis, broadcasting and dtype once, and hands
the rows to the row engine."""
import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import engine
from .validate import (
    DEFAULT_EPS,
    LOG_PROB_MAX,
    as_input,
    check_axis,
    check_eps,
    check_flag,
    check_loss_forms,
    check_num_threads,
    REDUCTIONS,
    check_reduction,
    check_temperature,
    check_where,
    check_out,
    check_temperature_dtype,
    logits_dtype,
)

_LOSSES = engine.LOSSES
# The call in C (klfast._kernels.fast_loss), small or large: tried first, with
# the arguments as given; None sends the call to the general path below.
_fast_loss = engine.fast_loss
_reduce = engine.reduce_rows


def _loss(loss, target, logits, temperature, target_is_logits, reduction, return_grad, eps,
          axis, num_threads, grad_out, input, where=None):
    if type(reduction) is str and reduction in REDUCTIONS:  # first the call in C
        fast = _fast_loss(_LOSSES[loss], target, logits, input, temperature,
                          target_is_logits, return_grad, eps, axis, num_threads, grad_out, where,
                          reduction == "mean", LOG_PROB_MAX)
        if fast is not None:
            rows, grad, included, dtype = fast
            return _value(rows, grad, reduction, dtype, included, return_grad)
    temperature = check_temperature(temperature)
    reduction = check_reduction(reduction)
    forms = check_loss_forms(input, target_is_logits)
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
    mask = check_where(where, outer)
    # a mean divides by the rows scored (torch's ignore_index)
    n_rows = math.prod(outer) if mask is None else int(np.count_nonzero(mask))

    grad = None
    if grad_out is not None:
        if not return_grad:
            raise ValueError("grad_out needs return_grad=True")
        grad = check_out(grad_out, logits.shape, dtype, "grad_out")
        # written while the inputs are read: an array over their memory gets a copy
        if np.may_share_memory(grad, logits) or np.may_share_memory(grad, target):
            grad = np.empty(logits.shape, dtype=dtype)
    elif return_grad:
        grad = np.empty(logits.shape, dtype=dtype)
    scale = 1.0 / temperature
    if reduction == "mean" and n_rows > 0:
        scale /= n_rows
    # rows left out by where are NaN, and their gradient rows 0
    rows = np.empty(outer, dtype=np.float64) if mask is None else np.full(outer, np.nan)
    inv_t = 1.0 / temperature
    job = engine.FormsJob(loss, forms, (inv_t if forms[0] == "logits" else 1.0, inv_t),
                          eps=eps, num_threads=num_threads, dtype=dtype,
                          names=("target", "logits"), loss=True, check_sums=False,
                          log_prob_max=LOG_PROB_MAX, grad_scale=scale)
    t_view = np.broadcast_to(np.moveaxis(target.reshape(t_shape), ax, -1), outer + (k,))
    z_view = np.moveaxis(logits, ax, -1)
    g_view = None if grad is None else np.moveaxis(grad, ax, -1)
    engine.run(job, (t_view, z_view), rows, grad=g_view, where=mask)
    if grad_out is not None and grad is not grad_out:
        grad_out[...] = grad
        grad = grad_out

    return _value(rows, grad, reduction, dtype, None if mask is None else np.flatnonzero(mask),
                  return_grad)


def _value(rows, grad, reduction, dtype, included, return_grad):
    """The loss of the per-row values ``rows`` (float64, C-contiguous; NaN
    in the rows left out), in ``dtype``: as they are, their sum or their
    mean; ``included``: the numbers of the rows included (flat, in C
    order), or None for every row."""
    if reduction == "none":
        value = rows.astype(dtype)
        if value.ndim == 0:
            value = value[()]
    else:
        # in C, compensated; a sum past float32's range is inf, as numpy rounds
        value = dtype.type(_reduce(rows if included is None else rows.reshape(-1)[included],
                                   reduction == "mean", dtype == np.float32))
    return (value, grad) if return_grad else value


def kl_loss(target, logits, *, input=None, temperature=1.0, target_is_logits=False,
            reduction="mean", return_grad=False, eps=DEFAULT_EPS, axis=-1, num_threads=None,
            grad_out=None, where=None):
    return _loss("kl", target, logits, temperature, target_is_logits, reduction, return_grad,
                 eps, axis, num_threads, grad_out, input, where)


def cross_entropy_loss(target, logits, *, input=None, temperature=1.0, target_is_logits=False,
                       reduction="mean", return_grad=False, eps=DEFAULT_EPS, axis=-1,
                       num_threads=None, grad_out=None, where=None):
    return _loss("cross_entropy", target, logits, temperature, target_is_logits, reduction,
                 return_grad, eps, axis, num_threads, grad_out, input, where)


_DOC_PARAMS = """
    Parameters
    ----------
    target : array_like
        Target distributions, shape broadcastable to ``logits.shape`` with the
        same length along ``axis``, in the form ``input`` names:
        probabilities (non-negative, used as given, not normalized),
        log-probabilities (``p = exp(target)``, ``-inf`` for 0, at most
        ``log(1 + SUM_TOLERANCE)``), or teacher logits (``p = softmax(target /
        T)``; ``-inf`` is a class of probability 0).
    logits : array_like
        Model outputs, array of shape (..., k, ...) with the classes along
        ``axis``: no NaN or ``+inf``; a ``-inf`` logit is a class of
        probability 0 (where ``p > 0`` the loss is ``inf``).
    input : tuple, default ("probs", "logits")
        The forms of (target, logits), with the words of :func:`klfast.kl`:
        ``("probs", "logits")``, ``("log_probs", "logits")`` or
        ``("logits", "logits")`` (also written ``"logits"``). The logits are
        always logits.
    temperature : float, default 1.0
        ``T > 0``, finite, and large enough that ``1 / T`` is finite in the
        logits' dtype (``T`` above about 5.6e-309 for float64, 2.9e-39 for
        float32; smaller is a ValueError). Divides the logits (and teacher
        logits). The loss is
        not multiplied by ``T**2`` (distillation often does that; multiply the
        loss and grad yourself).
    target_is_logits : bool, default False
        Interpret ``target`` as logits: the same as ``input="logits"``.
    reduction : {"none", "sum", "mean"}, default "mean"
        ``"none"``: the per-row values, shape ``logits.shape`` without ``axis``.
        ``"sum"``: their sum, in float64 with compensation (Neumaier: about one
        rounding whatever the number of rows; ``inf`` only past the float64
        range), then rounded to the logits' dtype.
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
    grad_out : ndarray, optional
        With ``return_grad=True``: an array of the shape of ``logits`` and the
        dtype of the loss to write the gradient into, returned as ``grad``. A
        training loop that passes the same array every step does not allocate
        (and fault in) a fresh gradient each time. An array that shares memory
        with ``target`` or ``logits`` gets the same values, through a copy.
    where : array_like of bool, optional
        The rows to include, broadcast against ``logits.shape`` without
        ``axis`` (e.g. False for padding tokens). Rows left out are not read
        (not checked) nor counted: ``"mean"`` divides by the number of rows
        included (torch's ``ignore_index``; NaN when none is), ``"none"``
        gives NaN for them, and their gradient rows are 0.

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
        An unknown ``reduction``; a ``grad_out`` of the wrong shape or dtype,
        read-only, or without ``return_grad=True``; ``temperature`` <= 0, not finite, or so
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
    >>> log_target = np.log(target)                # the same target as log-probabilities
    >>> klfast.kl_loss(log_target, logits, input=("log_probs", "logits"), reduction="none").round(6)
    array([0.025448, 0.075337])
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
