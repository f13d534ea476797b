"""Peak memory of a call, measured in a fresh subprocess.

A kl call may use at most its inputs + output + 5 % above the interpreter's
baseline: no input-sized temporaries. The control case shows the measurement
sees a temporary when there is one (scipy's rel_entr allocates an input-sized
array). See klfast/bench/memory.py for how the baseline is taken.
"""
import pytest

from klfast.bench.memory import SLACK, peak_memory

FULL = (100_000, 1_000)   # 1.6 GB of float64 input
SMALL = (5_000, 1_000)    # 80 MB: large enough that page-level noise is far below 5 %


@pytest.fixture(scope="module")
def size(small):
    return SMALL if small else FULL


def _describe(info):
    mib = 2 ** 20
    return (f"baseline {info['baseline'] / mib:.1f} MiB, inputs + output "
            f"{(info['inputs'] + info['output']) / mib:.1f} MiB, peak {info['peak'] / mib:.1f} MiB, "
            f"allowed {info['bound'] / mib:.1f} MiB ({info['overhead']:.3f}x)")


@pytest.mark.parametrize("dtype, ref_row, threads", [
    ("float64", False, None),
    ("float32", False, None),
    ("float64", True, None),
    ("float64", False, 1),
])
def test_kl_peak_memory(size, dtype, ref_row, threads):
    info = peak_memory(*size, dtype=dtype, measure="kl", threads=threads, ref_row=ref_row)
    assert info["ok"], f"kl allocates more than {SLACK:.0%} over its inputs: " + _describe(info)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_kl_logits_peak_memory(size, dtype):
    """KL from logits: the log-sum-exps and the measure in one kernel, no
    softmax array (float16: read as it is, no float32 copy)."""
    n_rows, k = size
    shape = (n_rows // 10, k * 10)  # rows as long as a vocabulary
    info = peak_memory(*shape, dtype=dtype, measure="kl", form="logits")
    assert info["ok"], f"kl from logits allocates more than {SLACK:.0%} over its inputs: " + \
        _describe(info)


def test_peak_memory_sees_a_temporary(size):
    pytest.importorskip("scipy")
    info = peak_memory(*size, dtype="float64", impl="scipy")
    assert not info["ok"], "the measurement missed scipy's input-sized temporary: " + _describe(info)
