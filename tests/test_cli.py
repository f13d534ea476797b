"""The ``klfast score`` command, run as a subprocess on small files.

Scores are checked against the slow twin (klfast._core.reference); every bad
input must give exit status 2, one line ``klfast: error: <file>: <problem>``
and no file left behind.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo import call_ref

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

# every test starts the command line in a subprocess: seconds in all
pytestmark = pytest.mark.slow

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")
N_ROWS, K = 123, 9


def _console_script():
    """The installed ``klfast`` script next to this Python, or on PATH."""
    beside = Path(sys.executable).with_name("klfast")
    return str(beside) if beside.exists() else shutil.which("klfast")


KLFAST_SCRIPT = _console_script()


def run_cli(cwd, *args, script=False, **kwargs):
    command = [KLFAST_SCRIPT] if script else [sys.executable, "-m", "klfast.cli"]
    # cwd is a temporary folder, so the installed klfast is imported, not ./klfast
    return subprocess.run(command + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, **kwargs)


def twin(measure, p, q=None, **kwargs):
    """The slow twin of ``klfast score --measure MEASURE`` (jensen_shannon takes
    no eps)."""
    if measure == "jensen_shannon":
        kwargs.pop("eps", None)
    return call_ref(measure, p, q, **kwargs)


def read_scores(path, measure):
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        assert table.column_names == [measure]
        return table[measure].to_numpy()
    with open(path) as f:
        assert f.readline().strip() == measure
    return np.loadtxt(path, skiprows=1, ndmin=1)


def make_rows(seed, n_rows=N_ROWS, k=K, zeros=True):
    rng = np.random.default_rng(seed)
    x = rng.random((n_rows, k)) + 0.05
    if zeros:
        x[rng.random((n_rows, k)) < 0.2] = 0.0  # zeros in p: exact 0 terms
    x[:, 0] += 0.1  # no all-zero row
    return x / x.sum(1, keepdims=True)


def write(path, rows, kind=None):
    """Write 2-D ``rows`` to ``path`` in the format its extension (and kind) says."""
    path = Path(path)
    if path.suffix == ".npy":
        np.save(path, rows)
    elif path.suffix == ".npz":
        np.savez(path, probs=rows)
    elif path.suffix == ".csv":
        header = ",".join(f"c{j}" for j in range(rows.shape[1])) if kind == "header" else ""
        np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.17g")
    elif kind == "columns":
        pq.write_table(pa.table({f"c{j}": rows[:, j] for j in range(rows.shape[1])}), path,
                       row_group_size=17)
    else:
        value_type = pa.list_(pa.float64(), rows.shape[1]) if kind == "fixed" else pa.list_(pa.float64())
        table = pa.table({"id": np.arange(len(rows)),
                          "probs": pa.array(list(rows), type=value_type)})
        pq.write_table(table, path, row_group_size=17)
    return path


@pytest.fixture
def pair(tmp_path):
    p, q = make_rows(1), make_rows(2, zeros=False)
    return tmp_path, p, q


def listing(directory):
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------- results


INPUTS = [  # (file name, kind, extra arguments)
    ("x.npy", None, []),
    ("x.npz", None, []),
    ("x.parquet", "list", []),
    ("x.parquet", "fixed", ["--columns", "probs"]),
    ("x.parquet", "columns", []),
    ("x.csv", None, []),
    ("x.csv", "header", []),
]


@pytest.mark.parametrize("index", range(len(INPUTS)),
                         ids=[f"{name}-{kind}" for name, kind, _ in INPUTS])
def test_every_input_format(pair, index):
    tmp_path, p, q = pair
    name, kind, extra = INPUTS[index]
    out = ("s.npy", "s.parquet", "s.csv")[index % 3]
    stem, ext = name.split(".")
    write(tmp_path / f"p.{ext}", p, kind)
    write(tmp_path / f"q.{ext}", q, kind)
    run = run_cli(tmp_path, "score", f"p.{ext}", f"q.{ext}", "--measure", "kl", "--eps", "0",
                  "--out", out, "--chunk-rows", "10", *extra)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(read_scores(tmp_path / out, "kl"), twin("kl", p, q, eps=0.0),
                               rtol=1e-12, atol=1e-15)
    assert listing(tmp_path) == sorted([f"p.{ext}", f"q.{ext}", out])


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("out", ["s.npy", "s.parquet", "s.csv"])
def test_every_measure_and_output(pair, measure, out):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    inputs = ["p.npy"] if measure == "entropy" else ["p.npy", "q.npy"]
    run = run_cli(tmp_path, "score", *inputs, "--measure", measure, "--out", out, "--eps", "0",
                  "--base", "2", "--threads", "2")
    assert run.returncode == 0, run.stderr
    scores = read_scores(tmp_path / out, measure)
    assert scores.shape == (N_ROWS,)
    np.testing.assert_allclose(scores, twin(measure, p, q, eps=0.0, base=2),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("q_file", ["ref.npy", "ref.csv", "ref.parquet", "ref2d.npy"])
def test_single_reference_row(pair, q_file):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    row = q[5]
    if q_file == "ref.npy":
        np.save(tmp_path / q_file, row)
    elif q_file == "ref2d.npy":
        np.save(tmp_path / q_file, row[None, :])
    else:
        write(tmp_path / q_file, row[None, :])
    run = run_cli(tmp_path, "score", "p.npy", q_file, "-m", "jeffreys", "--out", "j.npy",
                  "--eps", "0", "--chunk-rows", "50")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "j.npy"), twin("jeffreys", p, row, eps=0.0),
                               rtol=1e-12)


def test_parquet_list_input_with_reference_row(pair):
    tmp_path, p, q = pair
    write(tmp_path / "p.parquet", p, "list")
    write(tmp_path / "ref.parquet", q[:1], "list")
    run = run_cli(tmp_path, "score", "p.parquet", "ref.parquet", "-m", "cross_entropy",
                  "--out", "ce.parquet", "--eps", "0", "--chunk-rows", "7")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(read_scores(tmp_path / "ce.parquet", "cross_entropy"),
                               twin("cross_entropy", p, q[0], eps=0.0), rtol=1e-12)


def test_axis_0_normalize_counts_and_float32(tmp_path):
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 20, (K, N_ROWS))  # distributions are columns
    np.save(tmp_path / "counts.npy", counts)
    run = run_cli(tmp_path, "score", "counts.npy", "-m", "entropy", "--normalize", "--axis", "0",
                  "--out", "h.csv", "--chunk-rows", "13")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(read_scores(tmp_path / "h.csv", "entropy"),
                               twin("entropy", counts, normalize=True, axis=0), rtol=1e-12)

    p32 = make_rows(4).astype(np.float32)
    q32 = make_rows(5, zeros=False).astype(np.float32)
    np.save(tmp_path / "p32.npy", p32)
    np.save(tmp_path / "q32.npy", q32)
    run = run_cli(tmp_path, "score", "p32.npy", "q32.npy", "-m", "kl", "--out", "k.npy")
    assert run.returncode == 0, run.stderr
    scores = np.load(tmp_path / "k.npy")
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, twin("kl", p32, q32), rtol=1e-5, atol=1e-6)


def test_npz_keys(pair):
    tmp_path, p, q = pair
    np.savez(tmp_path / "both.npz", p=p, q=q)
    run = run_cli(tmp_path, "score", "both.npz", "both.npz", "--key", "p,q", "-m", "kl",
                  "--out", "k.npy")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "k.npy"), twin("kl", p, q), rtol=1e-12)


def test_output_replaces_an_existing_file(pair):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    (tmp_path / "h.csv").write_text("old\n")
    run = run_cli(tmp_path, "score", "p.npy", "-m", "entropy", "--out", "h.csv", "-q")
    assert run.returncode == 0 and run.stderr == ""
    np.testing.assert_allclose(read_scores(tmp_path / "h.csv", "entropy"),
                               twin("entropy", p), rtol=1e-12)
    assert (tmp_path / "h.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(KLFAST_SCRIPT is None, reason="the klfast console script is not installed")
def test_installed_console_script(pair):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    run = run_cli(tmp_path, "score", "p.npy", "q.npy", "-m", "kl", "--out", "k.parquet",
                  "--eps", "0", script=True)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(read_scores(tmp_path / "k.parquet", "kl"),
                               twin("kl", p, q, eps=0.0),
                               rtol=1e-12)
    run = run_cli(tmp_path, "score", "p.npy", "--measure", "kl", "--out", "x.npy", script=True)
    assert run.returncode == 2 and run.stderr.startswith("klfast: error: ")


# ---------------------------------------------------------------- help and progress


def test_help_explains_every_option(tmp_path):
    top = run_cli(tmp_path, "--help")
    assert top.returncode == 0
    assert "score" in top.stdout and "example" in top.stdout
    score = run_cli(tmp_path, "score", "--help")
    assert score.returncode == 0
    for option in ("--measure", "--out", "--eps", "--base", "--normalize", "--axis", "--threads",
                   "--chunk-rows", "--dask-scheduler", "--key", "--columns", "--quiet",
                   "--progress", ".npy", ".npz", ".parquet", ".csv", "examples:",
                   "klfast score p.npy q.npy --measure kl --out kl.npy"):
        assert option in score.stdout, option


def test_progress_and_summary(pair):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    args = ["score", "p.npy", "-m", "entropy", "--out", "h.npy", "--chunk-rows", "10"]
    piped = run_cli(tmp_path, *args)  # stderr is a pipe: summary only
    assert piped.returncode == 0
    assert piped.stderr.count("\n") == 1 and "ETA" not in piped.stderr
    assert f"{N_ROWS} rows" in piped.stderr and "rows/s" in piped.stderr and " s " in piped.stderr
    forced = run_cli(tmp_path, *args, "--progress")
    assert "ETA" in forced.stderr and f"{N_ROWS}/{N_ROWS} rows" in forced.stderr
    quiet = run_cli(tmp_path, *args, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal(pair):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    controller, terminal = os.openpty()
    try:
        run = subprocess.run([sys.executable, "-m", "klfast.cli", "score", "p.npy", "-m",
                              "entropy", "--out", "h.npy"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=terminal, timeout=60)
        os.close(terminal)
        terminal = None
        output = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO once the terminal side is closed and drained
                break
            if not data:
                break
            output += data
    finally:
        if terminal is not None:
            os.close(terminal)
        os.close(controller)
    assert run.returncode == 0
    text = output.decode()
    assert "rows/s" in text and "ETA" in text and "\r" in text


# ---------------------------------------------------------------- bad input


def _npy_bytes_truncated(path):
    np.save(path, make_rows(9))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def _bad_values(path, value, where=(17, 3)):
    rows = make_rows(8)
    rows[where] = value
    np.save(path, rows)


BAD_INPUTS = {
    # name: (setup(tmp_path), arguments after "score", expected stderr after "klfast: error: ")
    "missing_p": (lambda d: None, ["nope.npy", "q.npy", "-m", "kl"], "nope.npy: no such file"),
    "missing_q": (lambda d: None, ["p.npy", "gone.csv", "-m", "kl"], "gone.csv: no such file"),
    "directory": (lambda d: (d / "dir.npy").mkdir(), ["dir.npy", "-m", "entropy"],
                  "dir.npy: is a directory"),
    "corrupt_npy": (lambda d: (d / "bad.npy").write_bytes(b"not numpy at all" * 10),
                    ["bad.npy", "q.npy", "-m", "kl"], "bad.npy: not a valid .npy file"),
    "empty_npy": (lambda d: (d / "bad.npy").write_bytes(b""),
                  ["bad.npy", "-m", "entropy"], "bad.npy: not a valid .npy file"),
    "truncated_npy": (lambda d: _npy_bytes_truncated(d / "bad.npy"),
                      ["p.npy", "bad.npy", "-m", "kl"], "bad.npy: not a valid .npy file"),
    "corrupt_npz": (lambda d: (d / "bad.npz").write_bytes(b"PK\x03\x04 broken"),
                    ["bad.npz", "-m", "entropy"], "bad.npz: not a valid .npz file"),
    "npz_several_arrays": (lambda d: np.savez(d / "two.npz", a=np.ones((2, 2)), b=np.ones(2)),
                           ["two.npz", "-m", "entropy"], "two.npz: holds 2 arrays (a, b)"),
    "npz_missing_key": (lambda d: np.savez(d / "one.npz", a=np.ones((2, 2))),
                        ["one.npz", "-m", "entropy", "--key", "zz"], "one.npz: has no array 'zz'"),
    "corrupt_parquet": (lambda d: (d / "bad.parquet").write_bytes(b"PAR1" + b"\0" * 40),
                        ["bad.parquet", "-m", "entropy"], "bad.parquet: not a valid Parquet file"),
    "parquet_strings": (lambda d: pq.write_table(pa.table({"a": ["x", "y"]}), d / "s.parquet"),
                        ["s.parquet", "-m", "entropy"], "s.parquet: column 'a' holds string"),
    "parquet_missing_column": (lambda d: write(d / "c.parquet", make_rows(1), "columns"),
                               ["c.parquet", "-m", "entropy", "--columns", "c0,zz"],
                               "c.parquet: no column 'zz'"),
    "parquet_null": (lambda d: pq.write_table(pa.table({"a": [0.5, None], "b": [0.5, 1.0]}),
                                              d / "n.parquet"),
                     ["n.parquet", "-m", "entropy"], "n.parquet: column 'a' has null values"),
    "parquet_ragged_lists": (lambda d: pq.write_table(pa.table({"probs": [[0.5, 0.5], [1.0]]}),
                                                      d / "r.parquet"),
                             ["r.parquet", "-m", "entropy"],
                             "r.parquet: column 'probs': row 1 has 1 values, row 0 has 2"),
    "corrupt_csv": (lambda d: (d / "bad.csv").write_text("0.5,0.5\n0.2,abc\n"),
                    ["bad.csv", "-m", "entropy"], "bad.csv: cannot parse CSV"),
    "empty_csv": (lambda d: (d / "e.csv").write_text(""), ["e.csv", "-m", "entropy"],
                  "e.csv: CSV file is empty"),
    "rows_mismatch": (lambda d: np.save(d / "q5.npy", make_rows(2, n_rows=5)),
                      ["p.npy", "q5.npy", "-m", "kl"],
                      f"q5.npy: has 5 distributions but p.npy has {N_ROWS}"),
    "length_mismatch": (lambda d: np.save(d / "q8.npy", make_rows(2, k=K - 1)),
                        ["p.npy", "q8.npy", "-m", "kl"],
                        f"q8.npy: distributions have {K - 1} values but those of p.npy have {K}"),
    "three_dims": (lambda d: np.save(d / "cube.npy", np.ones((2, 2, 2))),
                   ["cube.npy", "-m", "entropy"], "cube.npy: expected a 1-D or 2-D array"),
    "complex": (lambda d: np.save(d / "c.npy", np.ones((2, 2), dtype=complex)),
                ["c.npy", "-m", "entropy"], "c.npy: dtype complex128 is not supported"),
    "nan_in_p": (lambda d: _bad_values(d / "nan.npy", np.nan), ["nan.npy", "q.npy", "-m", "kl",
                                                                "--chunk-rows", "5"],
                 "nan.npy: row 17 contains NaN (at position 3)"),
    "negative_in_q": (lambda d: _bad_values(d / "neg.npy", -0.5, (100, 2)),
                      ["p.npy", "neg.npy", "-m", "jeffreys", "--chunk-rows", "7"],
                      "neg.npy: row 100 has a negative entry"),
    "inf_in_csv": (lambda d: (d / "inf.csv").write_text("0.5,0.5\n0.5,inf\n"),
                   ["inf.csv", "-m", "entropy"], "inf.csv: row 1 contains an infinite value"),
    "negative_reference_row": (lambda d: np.save(d / "ref.npy", np.array([0.5, -0.1] + [0.1] * (K - 2))),
                               ["p.npy", "ref.npy", "-m", "kl"], "ref.npy: row 0 has a negative entry"),
    "zero_row_normalize": (lambda d: _bad_values(d / "z.npy", 0.0, (slice(None),)),
                           ["z.npy", "-m", "entropy", "--normalize"],
                           "z.npy: row 0 sums to 0 and cannot be normalized"),
    "unknown_measure": (lambda d: None, ["p.npy", "q.npy", "-m", "hellinger"],
                        "argument --measure/-m: invalid choice: 'hellinger'"),
    "unknown_input_extension": (lambda d: (d / "p.txt").write_text("1,2\n"),
                                ["p.txt", "-m", "entropy"], "p.txt: unknown input format '.txt'"),
    "unknown_output_extension": (lambda d: None, ["p.npy", "-m", "entropy", "--out", "o.json"],
                                 "o.json: unknown output format '.json'"),
    "output_directory_missing": (lambda d: None, ["p.npy", "-m", "entropy", "--out", "no/o.npy"],
                                 "no/o.npy: directory"),
    "entropy_with_q": (lambda d: None, ["p.npy", "q.npy", "-m", "entropy"],
                       "q.npy: entropy takes P only"),
    "kl_without_q": (lambda d: None, ["p.npy", "-m", "kl"], "kl needs P and Q; Q is missing"),
    "negative_eps": (lambda d: None, ["p.npy", "-m", "entropy", "--eps", "-1"], "--eps: must be >= 0"),
    "base_one": (lambda d: None, ["p.npy", "-m", "entropy", "--base", "1"], "--base: must be > 0"),
    "zero_threads": (lambda d: None, ["p.npy", "-m", "entropy", "--threads", "0"],
                     "argument --threads: expected an integer >= 1"),
    "zero_chunk_rows": (lambda d: None, ["p.npy", "-m", "entropy", "--chunk-rows", "0"],
                        "argument --chunk-rows: expected an integer >= 1"),
    "dask_needs_npy": (lambda d: write(d / "p.csv", make_rows(1)),
                       ["p.csv", "-m", "entropy", "--dask-scheduler", "tcp://127.0.0.1:9"],
                       "p.csv: --dask-scheduler reads .npy files only"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_no_output(pair, case):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    setup, args, expected = BAD_INPUTS[case]
    setup(tmp_path)
    if "--out" not in args:
        args = args + ["--out", "out.npy"]
    before = listing(tmp_path)
    run = run_cli(tmp_path, "score", *args)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("klfast: error: " + expected), lines[0]
    assert listing(tmp_path) == before  # no output, no temporary file


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_unreadable_file(pair):
    tmp_path, p, q = pair
    np.save(tmp_path / "p.npy", p)
    os.chmod(tmp_path / "p.npy", 0)
    run = run_cli(tmp_path, "score", "p.npy", "-m", "entropy", "--out", "h.npy")
    assert run.returncode == 2
    assert run.stderr.strip() == "klfast: error: p.npy: permission denied"
    assert not (tmp_path / "h.npy").exists()


def test_failure_keeps_the_previous_output(pair):
    tmp_path, p, q = pair
    p[100, 4] = np.nan  # found in the last chunk, after earlier chunks were written
    np.save(tmp_path / "p.npy", p)
    (tmp_path / "h.parquet").write_bytes(b"previous result")
    run = run_cli(tmp_path, "score", "p.npy", "-m", "entropy", "--out", "h.parquet",
                  "--chunk-rows", "20")
    assert run.returncode == 2
    assert run.stderr.strip() == "klfast: error: p.npy: row 100 contains NaN (at position 4)"
    assert (tmp_path / "h.parquet").read_bytes() == b"previous result"
    assert listing(tmp_path) == ["h.parquet", "p.npy"]
