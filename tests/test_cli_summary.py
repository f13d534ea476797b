"""``klfast score --summary / --summary-out``, run as a subprocess.

The JSON must hold klfast.summary() of the scores, bit for bit (JSON floats
round-trip exactly), for every --chunk-rows and --threads; the table goes to
stdout; the JSON file is complete or absent on every exit path, like OUT.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import klfast

pytestmark = pytest.mark.slow  # every test starts the command line in a subprocess

N_ROWS, K = 300, 12


def run_cli(cwd, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "klfast.cli", "score", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def rows(seed, n_rows=N_ROWS, k=K):
    x = np.random.default_rng(seed).random((n_rows, k)) + 0.05
    return x / x.sum(1, keepdims=True)


@pytest.fixture
def files(tmp_path):
    p, q = rows(1), rows(2)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    return tmp_path, p, q


def expected_json(measure, scores, p="p.npy", q="q.npy", **kwargs):
    result = klfast.summary(scores, **kwargs).to_dict()
    return {"measure": measure, "p": p, "q": q, "percentile_method": "linear", **result}


def listing(directory):
    return sorted(os.listdir(directory))


def assert_one_line_error(run, expected):
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("klfast: error: " + expected), lines[0]


# ---------------------------------------------------------------- results


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "entropy", "cross_entropy",
                                     "jensen_shannon"])
def test_summary_json_and_table(files, measure):
    tmp_path, p, q = files
    inputs = ["p.npy"] if measure == "entropy" else ["p.npy", "q.npy"]
    run = run_cli(tmp_path, *inputs, "-m", measure, "--out", "s.npy", "--summary",
                  "--summary-out", "s.json")
    assert run.returncode == 0, run.stderr
    scores = np.load(tmp_path / "s.npy")
    operands = (p,) if measure == "entropy" else (p, q)
    np.testing.assert_array_equal(scores, getattr(klfast, measure)(*operands))
    document = json.loads((tmp_path / "s.json").read_text())
    assert document == expected_json(measure, scores, q=None if measure == "entropy" else "q.npy")
    # the table on stdout, the closing line (naming both files) on stderr
    s = klfast.summary(scores)
    table = run.stdout
    assert table.startswith(f"{measure} of p.npy")
    for text in (f"count    {N_ROWS}", f"{s.mean:.6g}", "standard error", f"{s.median:.6g}",
                 f"{s.p99_9:.6g}", f"{s.max:.6g}  (row {s.argmax})"):
        assert text in table, text
    assert run.stderr.count("\n") == 1 and "-> s.npy, s.json" in run.stderr


def test_summary_alone_writes_no_scores(files):
    tmp_path, p, q = files
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--summary")
    assert run.returncode == 0, run.stderr
    assert "count" in run.stdout and listing(tmp_path) == ["p.npy", "q.npy"]
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--summary-out", "kl.json", "--quiet")
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""
    assert listing(tmp_path) == ["kl.json", "p.npy", "q.npy"]
    assert json.loads((tmp_path / "kl.json").read_text()) == expected_json("kl", klfast.kl(p, q))
    # --quiet silences stderr, not the table that was asked for
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--summary", "--quiet")
    assert run.returncode == 0 and run.stderr == "" and "median" in run.stdout


def test_bitwise_identical_for_any_chunk_rows_and_threads(files):
    tmp_path, p, q = files
    texts = set()
    for chunk_rows, threads in ((1, 1), (7, 2), (64, 3), (N_ROWS, 1), (10_000, 4)):
        run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "jeffreys", "--summary-out", "j.json",
                      "--chunk-rows", chunk_rows, "--threads", threads)
        assert run.returncode == 0, run.stderr
        texts.add((tmp_path / "j.json").read_text())
    assert len(texts) == 1


def test_other_input_formats_and_float32(tmp_path):
    p = rows(3).astype(np.float32)
    np.savetxt(tmp_path / "p.csv", p.astype(np.float64), delimiter=",", fmt="%.17g")
    np.save(tmp_path / "p.npy", p)
    run = run_cli(tmp_path, "p.npy", "-m", "entropy", "--summary-out", "npy.json")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "npy.json").read_text()) == expected_json(
        "entropy", klfast.entropy(p), p="p.npy", q=None)
    run = run_cli(tmp_path, "p.csv", "-m", "entropy", "--summary-out", "csv.json",
                  "--chunk-rows", "17")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "csv.json").read_text()) == expected_json(
        "entropy", klfast.entropy(p.astype(np.float64)), p="p.csv", q=None)


def test_infinite_scores_are_strict_json(tmp_path):
    p, q = rows(4, n_rows=5), rows(5, n_rows=5)
    q[2, 3] = 0.0  # with --eps 0, KL of row 2 is +inf
    q[2] /= q[2].sum()
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--eps", "0", "--summary",
                  "--summary-out", "kl.json")
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "kl.json").read_text()
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert document["mean"] == "inf" and document["max"] == "inf" and document["argmax"] == 2
    assert document["stderr"] is None and document["median"] != "inf"
    assert "inf  (row 2)" in run.stdout


def test_help_documents_the_summary(tmp_path):
    run = run_cli(tmp_path, "--help")
    for text in ("--summary", "--summary-out", "FILE.json", "standard error", "bit for bit",
                 "8 bytes per row", '"linear"', "--out may be left out"):
        assert text in run.stdout, text


# ---------------------------------------------------------------- refused options


def _link(kind, target):
    def make(d):
        (os.link if kind == "hard" else os.symlink)(d / target if kind == "hard" else target,
                                                    d / "alias.json")
        return "alias.json"
    return make


REFUSED = {  # setup(tmp_path) -> extra arguments, the error's beginning
    "no_out_no_summary": (lambda d: [], "--out: required (or --summary"),
    "summary_out_is_p": (lambda d: ["--summary-out", "p.npy"],
                         "p.npy: is the input file p.npy; write the summary to another file"),
    "summary_out_is_q_by_path": (lambda d: ["--summary-out", str(d / "q.npy")],
                                 f"{{d}}/q.npy: is the input file q.npy"),
    "summary_out_hard_link_to_p": (lambda d: ["--summary-out", _link("hard", "p.npy")(d)],
                                   "alias.json: is the input file p.npy"),
    "summary_out_symlink_to_q": (lambda d: ["--summary-out", _link("sym", "q.npy")(d)],
                                 "alias.json: is the input file q.npy"),
    "summary_out_is_out": (lambda d: ["--summary-out", "s.json", "--out", "./s.json"],
                           "--summary-out: s.json is also --out"),
    "summary_out_not_json": (lambda d: ["--summary-out", "s.npy"],
                             "s.npy: unknown summary format '.npy'; expected .json"),
    "summary_out_missing_directory": (lambda d: ["--summary-out", "no/s.json", "--out", "s.npy"],
                                      "no/s.json: directory"),
    "summary_out_is_a_directory": (lambda d: (d / "s.json").mkdir() or ["--summary-out", "s.json"],
                                   "s.json: is a directory"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_before_scoring_and_nothing_written(files, case):
    tmp_path, p, q = files
    p[-1, 0] = np.nan  # the last row: scoring would fail there, naming it
    np.save(tmp_path / "p.npy", p)
    setup, expected = REFUSED[case]
    args = setup(tmp_path)
    before = {name: (tmp_path / name).read_bytes() if (tmp_path / name).is_file() else None
              for name in listing(tmp_path)}
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", *args)
    assert_one_line_error(run, expected.format(d=tmp_path))
    after = {name: (tmp_path / name).read_bytes() if (tmp_path / name).is_file() else None
             for name in listing(tmp_path)}
    assert after == before  # no output, no temporary file, inputs untouched


# ---------------------------------------------------------------- failures and signals


def test_failed_run_leaves_no_summary_and_keeps_the_previous_one(files):
    tmp_path, p, q = files
    p[250, 4] = np.nan  # found after earlier chunks were summarised
    np.save(tmp_path / "p.npy", p)
    (tmp_path / "s.json").write_text("previous summary")
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--out", "s.npy", "--summary",
                  "--summary-out", "s.json", "--chunk-rows", "20")
    assert_one_line_error(run, "p.npy: row 250 contains NaN (at position 4)")
    assert run.stdout == ""
    assert (tmp_path / "s.json").read_text() == "previous summary"
    assert listing(tmp_path) == ["p.npy", "q.npy", "s.json"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_run_leaves_no_summary(tmp_path, signum):
    x = np.random.default_rng(0).random((400_000, 4)) + 0.1
    np.save(tmp_path / "p.npy", x / x.sum(1, keepdims=True))
    (tmp_path / "h.json").write_text("previous summary")
    before = listing(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "klfast.cli", "score", "p.npy", "-m", "entropy",
                             "--summary-out", "h.json", "--chunk-rows", "1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not any(name.startswith(".klfast-") for name in listing(tmp_path)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no temporary file appeared: {proc.communicate()}")
        time.sleep(0.01)
    time.sleep(0.2)  # some chunks summarised
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 128 + signum, (proc.returncode, stderr)
    assert "no output written" in stderr
    assert listing(tmp_path) == before
    assert (tmp_path / "h.json").read_text() == "previous summary"


def test_summary_json_is_strict_and_round_trips(files):
    tmp_path, p, q = files
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--summary-out", "s.json")
    assert run.returncode == 0, run.stderr
    document = json.loads((tmp_path / "s.json").read_text())
    s = klfast.summary(klfast.kl(p, q))
    for name, value in s.to_dict().items():
        got = document[name]
        assert got == value and type(got) is type(value), name
        if isinstance(value, float):
            assert math.copysign(1.0, got) == math.copysign(1.0, value)


def test_no_rows_gives_count_0_and_nulls(tmp_path):
    np.save(tmp_path / "p.npy", np.empty((0, 5)))
    run = run_cli(tmp_path, "p.npy", "-m", "entropy", "--summary", "--summary-out", "e.json")
    assert run.returncode == 0, run.stderr
    document = json.loads((tmp_path / "e.json").read_text())
    assert document["count"] == 0 and document["argmax"] is None
    assert all(document[name] is None for name in ("mean", "stderr", "min", "median", "max"))
    assert "count    0" in run.stdout
