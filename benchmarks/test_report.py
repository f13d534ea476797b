"""`python -m klfast.bench` end to end on a tiny grid, so the report generator
cannot rot: it must write report.md, results.json and (with matplotlib) plots."""
import json

import pytest

pytest.importorskip("scipy")

from klfast import bench  # noqa: E402


def test_report_on_a_tiny_grid(tmp_path, capsys):
    out = tmp_path / "report"
    code = bench.main(["--shapes", "300x100,300x100:ref", "--dtypes", "float64,float32",
                       "--measures", "kl", "--threads", "1,2", "--zeros", "off,on",
                       "--repeat", "1", "--no-memory", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    timed = [r for r in results["records"] if "median_s" in r]
    assert {r["peer"] for r in timed} >= {"klfast", "scipy", "read floor"}
    assert all(r["agrees"] for r in timed if "agrees" in r), \
        [r["label"] for r in timed if r.get("agrees") is False]
    report = (out / "report.md").read_text()
    assert "## Key ratios (klfast)" in report and "## Machine" in report
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert list(out.glob("ns_per_element_*.png")) and list(out.glob("speedup_*.png"))


def test_bad_arguments_are_refused(tmp_path):
    for argv in (["--shapes", "100by10"], ["--dtypes", "float16"], ["--zeros", "maybe"],
                 ["--measures", "kld"], ["--threads", "0"], ["--peers", "nonesuch"]):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv + ["--out", str(tmp_path)])
        assert exc.value.code == 2, argv


def test_quick_run_with_jensen_shannon(tmp_path):
    out = tmp_path / "report"
    code = bench.main(["--quick", "--measures", "kl,jensen_shannon", "--repeat", "1",
                       "--no-memory", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    js = [r for r in results["records"] if r["measure"] == "jensen_shannon"]
    timed = {r["peer"] for r in js if "median_s" in r}
    assert timed >= {"klfast", "scipy", "numpy", "read floor"}, timed
    assert "scipy.stats.entropy" not in {r["peer"] for r in js}  # it has no Jensen-Shannon
    assert all(r["agrees"] for r in js if "agrees" in r), \
        [(r["label"], r["shape"], r["dtype"]) for r in js if r.get("agrees") is False]
    report = (out / "report.md").read_text()
    assert "### jensen_shannon · float32 · 1,000 x 1,000" in report
    assert "## klfast: time relative to kl" in report
    assert "| inputs | threads | jensen_shannon |" in report
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "speedup_jensen_shannon_float64.png").exists()
    assert (out / "ns_per_element_jensen_shannon_float32.png").exists()
