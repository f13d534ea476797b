"""KL from logits in pytest-benchmark groups.

Vocabulary rows: KL from float16 logits, one group per shape
(8,192 x 32,000 and 2,048 x 128,000 float16 logits: next-token logits of two
models), with klfast's kl(a, b, input="logits") beside klfast's kl on the
same distributions as float32 probabilities (made beforehand, not timed) and
torch's ``F.kl_div(F.log_softmax(b), F.log_softmax(a), log_target=True,
reduction="none").sum(-1)`` (KL(P || Q), P from a) in float16 and with a
float32 log-softmax, when torch is installed (skipped otherwise: torch is a
peer, never a requirement). ``benchmarks/bench_input_forms.py --dtype
float16`` reports the same as medians of per-turn ratios.

Every answer is checked before it is timed: klfast against scipy's
log_softmax in float64 on the float16 logits, every other peer against
klfast (torch's float16 log-softmax keeps about three digits: its KL is
checked to 30 %). Small sizes (a 16th of the rows and columns) when
benchmarking is disabled, in CI, or with --bench-small.

Classifier rows: KL of two float64 logits arrays of few classes (4,000,000 x
2, 2,000,000 x 10, 500,000 x 32, 250,000 x 64; a model and a perturbed copy, b = a + 0.5 z),
one group per shape: klfast's kl(a, b, input="logits") (rows a lane each,
engine/logits_lanes.h) beside klfast's kl of the same distributions as
probabilities (made beforehand), scipy (``softmax(a) * (log_softmax(a) -
log_softmax(b))`` summed) and torch's kl_div of two log-softmaxes. Checked
first against scipy's float64 value. A 64th of the rows when small.

Classifier losses: a training step's loss and gradient, one group per loss
and shape (float64 targets and logits, 4,000,000 x 2 and 2,000,000 x 10;
soft targets, a third of them one-hot labels): klfast's kl_loss and
cross_entropy_loss with return_grad=True into a grad_out= array made once
(rows a lane each, engine/logits_lanes.h), scipy (log_softmax, the terms,
exp(log q) - p) and torch (``F.cross_entropy`` with probability targets, or
``F.kl_div`` of a log_softmax, then backward()). Each peer's loss and
gradient are checked first against scipy's.

Masked classes: kl_loss and its gradient, 2,000,000 x 10 float64, a tenth of
the classes masked (the target 0 and the logit -inf there, as an action or
vocabulary mask), the target as probabilities or as log-probabilities
(``input=("log_probs", "logits")``; torch's ``kl_div(..., log_target=True)``).
The peers get -1e9 for a masked logit (torch's kl_div gives NaN at -inf: 0 *
-inf; torch also for a -inf log-target), which is the same loss and gradient
in float64.

Jeffreys and Jensen-Shannon of classifier rows: jeffreys and
jensen_shannon(a, b, input="logits") of the classifier logits (2,000,000 x 10
and 250,000 x 64; rows a lane each, every term >= 0 from KL's centred sums)
beside klfast on the same distributions as probabilities, scipy (KL both ways
of two log_softmaxes; softmax, then
``scipy.spatial.distance.jensenshannon(P, Q, axis=1) ** 2``) and torch (two
kl_divs of log_softmaxes; softmax, the mixture's log, two kl_divs), checked
first against scipy.

Masked policies: kl and jeffreys of two float64 logits arrays, 2,000,000 x
10, a tenth of the classes masked in both (-inf at the same classes, as two
policies under one action mask; rows a lane each, the masked classes terms
of 0), beside scipy and torch on the same logits with -1e9 at the masks.
"""
import importlib.util

import numpy as np
import pytest
from scipy.special import log_softmax, xlogy

import klfast

SHAPES = ((8192, 32000), (2048, 128000))
PEERS = ("klfast logits", "klfast probs", "torch", "torch f32")


_inputs = {}


def inputs(shape, small):
    """Float16 logits a, b (b: a perturbed, as a quantized model's), the
    float32 softmaxes P, Q and the float64 reference KL; one shape kept at a
    time."""
    if small:
        shape = (shape[0] // 16, shape[1] // 16)
    if shape not in _inputs:
        _inputs.clear()
        rng = np.random.default_rng(0)
        a = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(np.float16)
        b = (a + rng.standard_normal(shape, dtype=np.float32) * 0.3).astype(np.float16)
        P = np.empty(shape, dtype=np.float32)
        Q = np.empty(shape, dtype=np.float32)
        reference = np.empty(shape[0])
        step = max(1, (1 << 22) // shape[1])  # float64 temporaries a block of rows at a time
        for r0 in range(0, shape[0], step):
            la = log_softmax(a[r0:r0 + step].astype(np.float64), axis=1)
            lb = log_softmax(b[r0:r0 + step].astype(np.float64), axis=1)
            P[r0:r0 + step] = np.exp(la)
            Q[r0:r0 + step] = np.exp(lb)
            reference[r0:r0 + step] = (np.exp(la) * (la - lb)).sum(1)
        _inputs[shape] = a, b, P, Q, reference
    return _inputs[shape]


def _prepare(peer, a, b, P, Q, threads):
    if peer == "klfast logits":
        return lambda: klfast.kl(a, b, input="logits", num_threads=threads)
    if peer == "klfast probs":
        return lambda: klfast.kl(P, Q, num_threads=threads)
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (an optional peer)")
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    dtype = torch.float32 if peer == "torch f32" else None

    def torch_kl():
        with torch.no_grad():
            return F.kl_div(F.log_softmax(tb, -1, dtype=dtype), F.log_softmax(ta, -1, dtype=dtype),
                            log_target=True, reduction="none").sum(-1).numpy()

    return torch_kl


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{k}" for n, k in SHAPES])
def test_kl_float16_logits(benchmark, small, shape, peer):
    a, b, P, Q, reference = inputs(shape, small)
    threads = klfast.default_num_threads()
    fn = _prepare(peer, a, b, P, Q, threads)
    got = np.asarray(fn(), dtype=np.float64)  # the check call, also the warm-up
    if peer == "klfast logits":
        # float32 arithmetic on the float16 logits: the README's float32 bound
        np.testing.assert_allclose(got, reference, rtol=1e-5)
    else:
        want = klfast.kl(a, b, input="logits", num_threads=threads)
        np.testing.assert_allclose(got, want, rtol=0.3 if peer == "torch" else 1e-4)
    benchmark.group = f"kl float16 logits {a.shape[0]}x{a.shape[1]}"
    benchmark.extra_info.update(peer=peer, threads=threads, elements=a.size)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)


CLASSIFIER_SHAPES = ((4_000_000, 2), (2_000_000, 10), (500_000, 32), (250_000, 64))
CLASSIFIER_PEERS = ("klfast logits", "klfast probs", "scipy", "torch")


def classifier_inputs(shape, small):
    """Float64 logits a, b = a + 0.5 z, their softmaxes P, Q and the scipy
    value (also the scipy peer's answer)."""
    if small:
        shape = (shape[0] // 64, shape[1])
    key = ("classifier", shape)
    if key not in _inputs:
        _inputs.clear()
        rng = np.random.default_rng(1)
        a = rng.standard_normal(shape) * 3
        b = a + rng.standard_normal(shape) * 0.5
        la, lb = log_softmax(a, axis=1), log_softmax(b, axis=1)
        _inputs[key] = a, b, np.exp(la), np.exp(lb), (np.exp(la) * (la - lb)).sum(1)
    return _inputs[key]


def _scipy_kl(a, b):
    la, lb = log_softmax(a, axis=1), log_softmax(b, axis=1)
    return (np.exp(la) * (la - lb)).sum(1)


@pytest.mark.parametrize("peer", CLASSIFIER_PEERS)
@pytest.mark.parametrize("shape", CLASSIFIER_SHAPES, ids=[f"{n}x{k}" for n, k in CLASSIFIER_SHAPES])
def test_kl_classifier_logits(benchmark, small, shape, peer):
    a, b, P, Q, reference = classifier_inputs(shape, small)
    threads = klfast.default_num_threads()
    if peer == "scipy":
        fn = lambda: _scipy_kl(a, b)  # noqa: E731
    elif peer == "torch":
        fn = _prepare("torch", a, b, P, Q, threads)
    else:
        fn = _prepare(peer, a, b, P, Q, threads)
    got = np.asarray(fn(), dtype=np.float64)
    np.testing.assert_allclose(got, reference, rtol=1e-9 if peer == "klfast probs" else 1e-12,
                               atol=1e-15)
    benchmark.group = f"kl float64 logits {a.shape[0]}x{a.shape[1]}"
    benchmark.extra_info.update(peer=peer, threads=threads, elements=a.size)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)


LOSS_SHAPES = ((4_000_000, 2), (2_000_000, 10))
LOSS_PEERS = ("klfast", "scipy", "torch")


def loss_inputs(shape, small):
    """Float64 targets (soft, every third row one-hot) and logits."""
    if small:
        shape = (shape[0] // 64, shape[1])
    key = ("loss", shape)
    if key not in _inputs:
        _inputs.clear()
        rng = np.random.default_rng(2)
        target = rng.dirichlet(np.ones(shape[1]), shape[0])
        target[::3] = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])][::3]
        _inputs[key] = target, rng.standard_normal(shape) * 3
    return _inputs[key]


def _scipy_loss(loss, target, logits):
    log_q = log_softmax(logits, axis=1)
    terms = -target * log_q if loss == "cross_entropy" else xlogy(target, target) - target * log_q
    n = logits.shape[0]
    return terms.sum() / n, (np.exp(log_q) - target) / n


def _loss_peer(peer, loss, target, logits, threads):
    if peer == "klfast":
        fn = klfast.kl_loss if loss == "kl" else klfast.cross_entropy_loss
        grad = np.empty_like(logits)
        return lambda: fn(target, logits, return_grad=True, grad_out=grad, num_threads=threads)
    if peer == "scipy":
        return lambda: _scipy_loss(loss, target, logits)
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (an optional peer)")
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    t = torch.from_numpy(target)

    def torch_loss():
        z = torch.from_numpy(logits).requires_grad_()
        if loss == "cross_entropy":
            value = F.cross_entropy(z, t)
        else:
            value = F.kl_div(F.log_softmax(z, -1), t, reduction="batchmean")
        value.backward()
        return value.item(), z.grad.numpy()

    return torch_loss


@pytest.mark.parametrize("peer", LOSS_PEERS)
@pytest.mark.parametrize("loss", ["kl", "cross_entropy"])
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=[f"{n}x{k}" for n, k in LOSS_SHAPES])
def test_classifier_loss_with_gradient(benchmark, small, shape, loss, peer):
    target, logits = loss_inputs(shape, small)
    threads = klfast.default_num_threads()
    fn = _loss_peer(peer, loss, target, logits, threads)
    value, grad = fn()
    want, want_grad = _scipy_loss(loss, target, logits)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-15 / logits.shape[0])
    benchmark.group = f"{loss}_loss and gradient float64 {logits.shape[0]}x{logits.shape[1]}"
    benchmark.extra_info.update(peer=peer, threads=threads, elements=logits.size)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)


MASKED_SHAPE = (2_000_000, 10)


def masked_inputs(small):
    """Targets (0 at a mask, the rest summing to 1) and logits (-inf at the
    same classes), a tenth of the classes masked, never a whole row."""
    shape = (MASKED_SHAPE[0] // 64, MASKED_SHAPE[1]) if small else MASKED_SHAPE
    key = ("masked", shape)
    if key not in _inputs:
        _inputs.clear()
        rng = np.random.default_rng(3)
        mask = rng.random(shape) < 0.1
        mask[mask.all(axis=1), 0] = False
        target = rng.dirichlet(np.ones(shape[1]), shape[0])
        target[mask] = 0.0
        target /= target.sum(axis=1, keepdims=True)
        logits = rng.standard_normal(shape) * 3
        logits[mask] = -np.inf
        _inputs[key] = target, logits
    return _inputs[key]


@pytest.mark.parametrize("peer", LOSS_PEERS)
@pytest.mark.parametrize("form", ["probs", "log_probs"])
def test_masked_classes_loss_with_gradient(benchmark, small, form, peer):
    target, logits = masked_inputs(small)
    threads = klfast.default_num_threads()
    with np.errstate(divide="ignore"):
        given = target if form == "probs" else np.log(target)
    finite = np.where(np.isinf(logits), -1e9, logits)  # the peers' mask
    if peer == "klfast":
        grad = np.empty_like(logits)

        def fn():
            return klfast.kl_loss(given, logits, input=(form, "logits"), return_grad=True,
                                  grad_out=grad, num_threads=threads)
    elif peer == "scipy":
        def fn():
            p = given if form == "probs" else np.exp(given)
            return _scipy_loss("kl", p, finite)
    else:
        if importlib.util.find_spec("torch") is None:
            pytest.skip("torch is not installed (an optional peer)")
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        t = torch.from_numpy(np.where(np.isinf(given), -1e9, given))  # (log targets: NaN too)

        def fn():
            z = torch.from_numpy(finite).requires_grad_()
            value = F.kl_div(F.log_softmax(z, -1), t, reduction="batchmean",
                             log_target=form == "log_probs")
            value.backward()
            return value.item(), z.grad.numpy()
    value, grad_got = fn()
    want, want_grad = _scipy_loss("kl", target, finite)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad_got, want_grad, rtol=1e-9, atol=1e-15 / logits.shape[0])
    benchmark.group = (f"kl_loss and gradient, masked classes, {form} targets, float64 "
                       f"{logits.shape[0]}x{logits.shape[1]}")
    benchmark.extra_info.update(peer=peer, threads=threads, elements=logits.size)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("peer", LOSS_PEERS)
@pytest.mark.parametrize("measure", ["kl", "jeffreys"])
def test_masked_policies_kl_jeffreys(benchmark, small, measure, peer):
    _, a = masked_inputs(small)
    b = a + np.random.default_rng(4).standard_normal(a.shape) * 0.5  # (-inf stays -inf)
    fa, fb = (np.where(np.isinf(x), -1e9, x) for x in (a, b))  # the peers' mask
    threads = klfast.default_num_threads()
    if peer == "klfast":
        fn = lambda: getattr(klfast, measure)(a, b, input="logits", num_threads=threads)  # noqa: E731
    elif peer == "scipy":
        def fn():
            kl = _scipy_kl(fa, fb)
            return kl + _scipy_kl(fb, fa) if measure == "jeffreys" else kl
    else:
        if importlib.util.find_spec("torch") is None:
            pytest.skip("torch is not installed (an optional peer)")
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(fa), torch.from_numpy(fb)

        def fn():
            la, lb = F.log_softmax(ta, -1), F.log_softmax(tb, -1)
            kl = F.kl_div(lb, la, log_target=True, reduction="none").sum(-1)
            if measure == "jeffreys":
                kl = kl + F.kl_div(la, lb, log_target=True, reduction="none").sum(-1)
            return kl.numpy()
    want = _scipy_kl(fa, fb) + (_scipy_kl(fb, fa) if measure == "jeffreys" else 0.0)
    np.testing.assert_allclose(np.asarray(fn()), want, rtol=1e-12, atol=1e-15)
    benchmark.group = f"{measure} of logits, masked classes, float64 {a.shape[0]}x{a.shape[1]}"
    benchmark.extra_info.update(peer=peer, threads=threads, elements=a.size)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)


def _scipy_js(a, b):
    from scipy.spatial.distance import jensenshannon
    from scipy.special import softmax

    return jensenshannon(softmax(a, axis=1), softmax(b, axis=1), axis=1) ** 2


def _scipy_jeffreys(a, b):
    return _scipy_kl(a, b) + _scipy_kl(b, a)


@pytest.mark.parametrize("peer", CLASSIFIER_PEERS)
@pytest.mark.parametrize("shape", CLASSIFIER_SHAPES[1::2],
                         ids=[f"{n}x{k}" for n, k in CLASSIFIER_SHAPES[1::2]])
@pytest.mark.parametrize("measure", ["jeffreys", "jensen_shannon"])
def test_symmetric_measures_classifier_logits(benchmark, small, measure, shape, peer):
    a, b, P, Q, _ = classifier_inputs(shape, small)
    threads = klfast.default_num_threads()
    scipy_fn = _scipy_js if measure == "jensen_shannon" else _scipy_jeffreys
    fk = getattr(klfast, measure)
    if peer == "klfast logits":
        fn = lambda: fk(a, b, input="logits", num_threads=threads)  # noqa: E731
    elif peer == "klfast probs":
        fn = lambda: fk(P, Q, num_threads=threads)  # noqa: E731
    elif peer == "scipy":
        fn = lambda: scipy_fn(a, b)  # noqa: E731
    else:
        if importlib.util.find_spec("torch") is None:
            pytest.skip("torch is not installed (an optional peer)")
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def fn():
            if measure == "jeffreys":
                la, lb = F.log_softmax(ta, -1), F.log_softmax(tb, -1)
                return (F.kl_div(lb, la, log_target=True, reduction="none").sum(-1)
                        + F.kl_div(la, lb, log_target=True, reduction="none").sum(-1)).numpy()
            tp, tq = F.softmax(ta, -1), F.softmax(tb, -1)
            lm = ((tp + tq) / 2).log()
            return (0.5 * (F.kl_div(lm, tp, reduction="none").sum(-1)
                           + F.kl_div(lm, tq, reduction="none").sum(-1))).numpy()
    np.testing.assert_allclose(np.asarray(fn()), scipy_fn(a, b),
                               rtol=1e-9 if peer == "klfast probs" else 1e-12, atol=1e-15)
    benchmark.group = f"{measure} float64 logits {a.shape[0]}x{a.shape[1]}"
    benchmark.extra_info.update(peer=peer, threads=threads, elements=a.size)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)
