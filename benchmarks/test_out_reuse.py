"""benchmarks/out_reuse.py runs (a smoke test: a tiny shape, two turns; its
times are not checked)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import out_reuse  # noqa: E402


@pytest.mark.parametrize("measure, dtype", [("kl", "float64"), ("entropy", "float32")])
def test_out_reuse_reports_each_thread_count(monkeypatch, capsys, measure, dtype):
    monkeypatch.setattr(sys, "argv", ["out_reuse.py", "--shape", "300x3", "--measure", measure,
                                      "--dtype", dtype, "--threads", "1,2", "--turns", "2"])
    out_reuse.main()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(", ")[1].split(":")[0] for line in lines] == ["1 thread(s)",
                                                                     "2 thread(s)"]
    assert all("fresh / out= " in line for line in lines)
