"""benchmarks/pair_rows.py on tiny inputs, so the script behind the entropy's
pair limits cannot rot: a line per dtype, length and thread count, and the
limits set back after it."""
import os
import sys

from klfast import _kernels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pair_rows  # noqa: E402


def test_pair_rows_on_tiny_inputs(capsys):
    before = _kernels.set_pair_min_k(7, 9)
    try:
        pair_rows.main(["--lengths", "100,20000", "--bytes", "4e5", "--turns", "1"])
        assert _kernels.set_pair_min_k(7, 9) == (7, 9)
    finally:
        _kernels.set_pair_min_k(*before)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 2 * 2
    assert all("pairs / alone" in line for line in lines)
    assert any(line.startswith("float32 5 x 20000 2 thread(s)") for line in lines)
