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


def test_progress_bar_counts_every_sample(tmp_path, monkeypatch):
    """The bar moves with each warm-up and sample (not once per sampled group,
    which left it at 1 of 434 for minutes with an estimate of days) and ends at
    its total."""
    bars = []

    class Recorder:
        def __init__(self, total):
            self.total, self.n, self.during_sampling = total, 0, []
            bars.append(self)

        def set_description_str(self, text, refresh=True):
            if text.startswith("sampling"):
                self.during_sampling.append(self.n)

        def update(self, n=1):
            self.n += n

        def close(self):
            pass

    monkeypatch.setattr(bench, "_progress", Recorder)
    code = bench.main(["--shapes", "200x50,200x50:ref", "--dtypes", "float64",
                       "--measures", "kl,entropy", "--threads", "1", "--zeros", "off,on",
                       "--repeat", "3", "--no-memory", "--no-plots",
                       "--out", str(tmp_path / "report")])
    assert code == 0
    (bar,) = bars
    assert bar.n == bar.total > 0
    # three turns over one group: the bar advanced between the turns
    assert len(bar.during_sampling) == 3
    assert bar.during_sampling[0] < bar.during_sampling[1] < bar.during_sampling[2] < bar.total


def test_ratio_pairs_the_samples_of_one_turn():
    from klfast.bench.report import ratio

    # the machine is 2x slower for turns 4-5 (both peers), and a burst hits
    # only a in turns 1-2: a is 1.1x b in the three clean turns. The ratio of
    # the medians (2.2 / 1.0) would say 2.2x.
    b = {"samples_s": [1.0, 1.0, 1.0, 2.0, 2.0], "median_s": 1.0, "group": 0}
    a = {"samples_s": [3.3, 3.3, 1.1, 2.2, 2.2], "median_s": 2.2, "group": 0}
    assert ratio(a, b) == pytest.approx(1.1)
    # the samples of a slow call stop after 3 turns: pairs up to the shorter
    c = {"samples_s": [2.0, 2.0, 3.0], "median_s": 2.0, "group": 0}
    assert ratio(c, b) == pytest.approx(2.0)
    assert ratio(b, c) == pytest.approx(0.5)
    # sampled in different groups (turn i of one is not turn i of the other),
    # or a report from before groups: the ratio of the medians
    assert ratio(dict(a, group=1), b) == pytest.approx(2.2)
    assert ratio({k: v for k, v in a.items() if k != "group"}, b) == pytest.approx(2.2)
    assert ratio({"median_s": 5.0}, b) == 5.0


def test_paired_peers_are_sampled_side_by_side(tmp_path):
    out = tmp_path / "report"
    code = bench.main(["--shapes", "300x100,300x100:ref", "--dtypes", "float64",
                       "--measures", "kl,entropy", "--threads", "1,2", "--zeros", "off,on",
                       "--peers", "klfast,read floor,scipy",
                       "--repeat", "2", "--no-memory", "--no-plots", "--out", str(out)])
    assert code == 0
    records = json.loads((out / "results.json").read_text())["records"]
    timed = [r for r in records if "median_s" in r]
    assert {r["group"] for r in timed} == {0}  # one shape group, one dtype
    at = {(r["measure"], r["ref_row"], r["zeros"], r["peer"], r["threads"]): r["position"]
          for r in timed}
    for threads in (1, 2):
        kl = at["kl", False, False, "klfast", threads]
        assert at["kl", False, False, "read floor", threads] == kl + 1
        assert at["kl", False, True, "klfast", threads] == kl + 2  # zeros / none
        assert at["kl", True, False, "klfast", threads] == kl + 4  # reference row / full
        assert at["entropy", False, False, "klfast", threads] == kl + 8  # entropy / kl
    assert at["kl", False, False, "scipy", 1] > at["entropy", False, True, "read floor", 2]
    # entropy ignores Q: no reference-row case of it (it would repeat the full one)
    assert not [r for r in records if r["measure"] == "entropy" and r["ref_row"]]
    assert [r for r in records if r["measure"] == "entropy"]
    report = (out / "report.md").read_text()
    assert "median over the turns" in report


def test_distributions_in_columns(tmp_path):
    """`ROWSxCOLS:cols`: klfast scores the (COLS, ROWS) array along axis 0 and
    must match scipy on the same columns; the floor reads the same bytes."""
    out = tmp_path / "report"
    code = bench.main(["--shapes", "3000x10:cols,3000x10", "--dtypes", "float64,float32",
                       "--measures", "kl,entropy", "--threads", "1,2", "--repeat", "1",
                       "--no-memory", "--no-plots", "--peers", "klfast,read floor,scipy",
                       "--out", str(out)])
    assert code == 0
    records = json.loads((out / "results.json").read_text())["records"]
    cols = [r for r in records if r["shape"] == "3000x10:cols"]
    assert {r["peer"] for r in cols if "median_s" in r} >= {"klfast", "read floor", "scipy"}
    klfast_runs = [r for r in cols if r["peer"] == "klfast"]
    assert len(klfast_runs) == 8 and all(r["agrees"] for r in klfast_runs)
    assert "3,000 columns of 10" in (out / "report.md").read_text()


def test_shape_suffixes():
    from klfast.bench.peers import Case, NumkongPeer, Shape, Unsupported
    assert Shape.parse("10x5:cols") == Shape(10, 5, cols=True)
    with pytest.raises(Unsupported, match="columns"):  # numkong takes rows only
        NumkongPeer()._prepare(None, Case("kl", "float64", Shape(10, 5, cols=True), False),
                               None, None, 1)
    assert Shape.parse("10x5:cols").key == "10x5:cols"
    with pytest.raises(ValueError, match="':ref' and ':cols'"):
        Shape.parse("10x5:rows")
