"""The ``klfast pairwise`` command: the matrix and the top-k in every output
format against klfast.pairwise, one-line errors with exit status 2 and no
file left behind. Runs the command in-process (main(argv)), so it is fast."""
import os

import numpy as np
import pytest

import klfast
from klfast.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def files(tmp_path, rng):
    P = rng.dirichlet(np.ones(12), size=40)
    Q = rng.dirichlet(np.ones(12), size=25)
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    return tmp_path, P, Q


def _read_matrix(path):
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".parquet":
        return np.array(pq.read_table(path).column(0).to_pylist())
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _read_topk(path, measure, topk):
    if path.suffix == ".npy":
        records = np.load(path)
        return records["index"], records["value"]
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        assert table.column_names == ["index", measure]
        return (np.array(table["index"].to_pylist()), np.array(table[measure].to_pylist()))
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return rows[:, :topk].astype(np.int64), rows[:, topk:]


@pytest.mark.parametrize("ext", [".npy", ".parquet", ".csv"])
@pytest.mark.parametrize("measure", ["kl", "js"])
def test_matrix(files, ext, measure, capsys):
    tmp, P, Q = files
    out = tmp / f"m{ext}"
    assert main(["pairwise", str(tmp / "P.npy"), str(tmp / "Q.npy"), "--measure", measure,
                 "--out", str(out), "--chunk-rows", "7"]) == 0
    want = klfast.pairwise(P, Q, measure)
    # the products' last bits are the BLAS's, which may round a pair differently
    # for chunks of another shape: within the accuracy bound (1e-12 relative)
    np.testing.assert_allclose(_read_matrix(out), want, rtol=2e-12 if measure == "kl" else 1e-15)
    assert "pairs" in capsys.readouterr().err


@pytest.mark.parametrize("ext", [".npy", ".parquet", ".csv"])
def test_topk(files, ext):
    tmp, P, Q = files
    out = tmp / f"nn{ext}"
    assert main(["pairwise", str(tmp / "P.npy"), str(tmp / "Q.npy"), "--measure", "js",
                 "--topk", "4", "--out", str(out), "--chunk-rows", "9", "--quiet"]) == 0
    idx, val = _read_topk(out, "jensen_shannon", 4)
    want_idx, want_val = klfast.pairwise(P, Q, "js", topk=4)
    assert np.array_equal(idx, want_idx)
    np.testing.assert_allclose(val, want_val, rtol=1e-15)


def test_against_itself(files):
    tmp, P, _ = files
    out = tmp / "self.npy"
    assert main(["pairwise", str(tmp / "P.npy"), "--measure", "jeffreys", "--out", str(out),
                 "-q"]) == 0
    got = np.load(out)
    assert np.array_equal(got, got.T)
    np.testing.assert_array_equal(got, klfast.pairwise(P, None, "jeffreys"))


@pytest.mark.parametrize("case", ["negative", "columns", "topk", "distance", "format"])
def test_errors_are_one_line_exit_2_and_leave_nothing(files, case, capsys):
    tmp, P, Q = files
    args = ["pairwise", str(tmp / "P.npy"), str(tmp / "Q.npy"), "--measure", "kl",
            "--out", str(tmp / "out.npy")]
    if case == "negative":
        bad = Q.copy()
        bad[6, 2] = -0.5
        np.save(tmp / "Q.npy", bad)
        message = "Q.npy: row 6 has a negative entry"
    elif case == "columns":
        np.save(tmp / "Q.npy", Q[:, :5])
        message = "distributions have 5 values"
    elif case == "topk":
        args += ["--topk", "26"]
        message = "--topk: 26 is more than the 25 rows"
    elif case == "distance":
        args += ["--distance"]
        message = "--distance: is for --measure jensen_shannon"
    else:
        args[-1] = str(tmp / "out.txt")
        message = "unknown output format"
    before = set(os.listdir(tmp))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("klfast: error: ") and message in err, err
    assert set(os.listdir(tmp)) == before
