"""benchmarks/placement.py runs (a smoke test: a tiny shape, one call per
placement; its times are not checked)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import placement  # noqa: E402


@pytest.mark.parametrize("measure, dtype", [("entropy", "float64"), ("kl", "float32")])
def test_placement_reports_every_placement(monkeypatch, capsys, measure, dtype):
    monkeypatch.setattr(sys, "argv", ["placement.py", "--shape", "300x3", "--measure", measure,
                                      "--dtype", dtype, "--calls", "1"])
    placement.main()
    lines = capsys.readouterr().out.splitlines()
    placements = [line for line in lines if "mod 4096" in line]
    assert len(placements) == len(placement.OFFSETS_P) * len(placement.OFFSETS_OUT)
    assert lines[-1].startswith("median ")
