"""torch tensors as inputs (issue 15 item 2): read in place through DLPack,
bfloat16 included (through its 16 bits as ml_dtypes.bfloat16). The scores are
checked against scipy in float64 on the values the tensors hold, and the
losses against torch's own kl_div / cross_entropy. torch is imported inside
the tests only (its OpenMP runtime stays out of the other modules' way);
the tests skip where torch is not installed."""
import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

import klfast


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def softmax64(z):
    return np.exp(log_softmax(np.asarray(z, np.float64), axis=-1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_probabilities_in_any_layout(torch, dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(300, 17, generator=g, dtype=getattr(torch, dtype)), 1)
    b = torch.softmax(torch.randn(300, 17, generator=g, dtype=getattr(torch, dtype)), 1)
    a_before = a.clone()
    want = rel_entr(a.double().numpy(), b.double().numpy()).sum(-1)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    got = klfast.kl(a, b)
    assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=rtol)
    np.testing.assert_allclose(klfast.kl(a.T, b.T, axis=0), want, rtol=rtol)  # strided view
    np.testing.assert_allclose(klfast.kl(a[::2], b[::2]), want[::2], rtol=rtol)
    assert torch.equal(a, a_before)


def test_bfloat16_logits(torch):
    pytest.importorskip("ml_dtypes")
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(200, 300, generator=g) * 3).to(torch.bfloat16)
    b = (a.float() + torch.randn(200, 300, generator=g) * 0.3).to(torch.bfloat16)
    a64, b64 = a.double().numpy(), b.double().numpy()  # the values the tensors hold
    want = rel_entr(softmax64(a64), softmax64(b64)).sum(-1)
    got = klfast.kl(a, b, input="logits")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # the same bits as the float32 tensors of the same values
    np.testing.assert_array_equal(got, klfast.kl(a.float(), b.float(), input="logits"))
    np.testing.assert_allclose(klfast.entropy(a, input="logits"),
                               -(softmax64(a64) * log_softmax(a64, axis=-1)).sum(-1),
                               rtol=1e-4)


def test_losses_agree_with_torch(torch):
    F = torch.nn.functional
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(64, 50, generator=g, dtype=torch.float64)
    target = torch.softmax(torch.randn(64, 50, generator=g, dtype=torch.float64), 1)
    want_kl = F.kl_div(F.log_softmax(logits, 1), target, reduction="batchmean").item()
    np.testing.assert_allclose(klfast.kl_loss(target, logits), want_kl, rtol=1e-12)
    want_ce = F.cross_entropy(logits, target).item()  # soft targets, mean over rows
    np.testing.assert_allclose(klfast.cross_entropy_loss(target, logits), want_ce, rtol=1e-12)
    keep = torch.arange(64) % 3 != 0  # a bool tensor as where=
    want = F.kl_div(F.log_softmax(logits[keep], 1), target[keep], reduction="batchmean").item()
    np.testing.assert_allclose(klfast.kl_loss(target, logits, where=keep), want, rtol=1e-12)


def test_clear_errors(torch):
    x = torch.full((4, 5), 0.2, requires_grad=True)
    with pytest.raises(TypeError, match=r"p is a torch tensor that requires grad: pass p\.detach"):
        klfast.kl(x, x.detach())
    with pytest.raises(TypeError, match=r"q is a torch tensor that requires grad"):
        klfast.kl(x.detach(), x)
    with pytest.raises(TypeError, match="must hold real numbers"):
        klfast.kl(torch.ones(3, dtype=torch.complex64), torch.ones(3))


@pytest.mark.parametrize("shape", [(11,), (32, 11), (2, 3, 11)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_small_tensors_take_the_shortcut(torch, shape, dtype, monkeypatch):
    """Small CPU tensors are viewed through DLPack by the C shortcut (the
    Python row engine is not reached), the losses' too: the values of
    scipy and torch, and the general path's bits."""
    from klfast._core import engine
    from zoo import general_path

    F = torch.nn.functional
    g = torch.Generator().manual_seed(3)
    tdtype = getattr(torch, dtype)
    a = torch.softmax(torch.randn(shape, generator=g, dtype=tdtype), -1)
    b = torch.softmax(torch.randn(shape, generator=g, dtype=tdtype), -1)
    logits = torch.randn(shape, generator=g, dtype=tdtype)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    real = engine.run

    def refused(*args, **kwargs):
        raise AssertionError("the call left the C shortcut")

    monkeypatch.setattr(engine, "run", refused)
    got = klfast.kl(a, b, base=2)
    assert np.asarray(got).dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, rel_entr(a.double().numpy(), b.double().numpy()).sum(-1)
                               / np.log(2), rtol=rtol)
    keep = torch.rand(shape[:-1], generator=g) < 0.5  # a bool tensor as where=
    masked = klfast.kl(a, b, base=2, where=keep)
    np.testing.assert_array_equal(np.isnan(masked), ~keep.numpy())
    np.testing.assert_array_equal(np.asarray(masked)[keep.numpy()], np.asarray(got)[keep.numpy()])
    loss = klfast.kl_loss(a, logits)
    assert loss.dtype == np.dtype(dtype)
    rows = 1 if len(shape) == 1 else int(np.prod(shape[:-1]))
    want = F.kl_div(F.log_softmax(logits.double(), -1), a.double(), reduction="sum").item() / rows
    np.testing.assert_allclose(loss, want, rtol=rtol)
    monkeypatch.setattr(engine, "run", real)
    with general_path():
        np.testing.assert_array_equal(got, klfast.kl(a, b, base=2))
        np.testing.assert_array_equal(masked, klfast.kl(a, b, base=2, where=keep))
        assert klfast.kl_loss(a, logits) == loss
