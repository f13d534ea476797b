"""Run the worked examples and check what they print and write.

The expected numbers are computed here independently with scipy.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats
from scipy.spatial.distance import jensenshannon

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.examples, pytest.mark.slow]  # each example trains or plots


def run_example(name, out_dir):
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(EXAMPLES / name), "--out", str(out_dir)],
                            capture_output=True, text=True, timeout=300, env=env,
                            cwd=out_dir.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), path


def table_row(stdout, label):
    match = re.search(re.escape(label) + r"\s+([-\d.]+)\s+([-\d.]+)\s*$", stdout, re.MULTILINE)
    assert match, f"no row {label!r} in:\n{stdout}"
    return match.group(1), match.group(2)


def test_worm_teeth(tmp_path):
    out = tmp_path / "figures"
    stdout = run_example("worm_teeth.py", out)

    counts = np.array([2, 3, 5, 14, 16, 15, 12, 8, 10, 8, 7])
    p = counts / counts.sum()
    teeth = np.arange(11)
    uniform = np.full(11, 1 / 11)
    binomial = scipy.stats.binom.pmf(teeth, 10, (teeth @ p) / 10)
    kl = scipy.stats.entropy  # entropy(p, q) is KL(p || q)
    expected = {
        "KL(true || model)": (kl(p, uniform), kl(p, binomial)),
        "KL(model || true)": (kl(uniform, p), kl(binomial, p)),
        "Jeffreys": (kl(p, uniform) + kl(uniform, p), kl(p, binomial) + kl(binomial, p)),
        "Jensen-Shannon": (jensenshannon(p, uniform) ** 2, jensenshannon(p, binomial) ** 2),
    }
    for label, values in expected.items():
        assert table_row(stdout, label) == tuple(f"{v:.4f}" for v in values), label
    # the values the README quotes
    assert table_row(stdout, "KL(true || model)") == ("0.1367", "0.4273")
    assert "Less information lost: the uniform model" in stdout
    for name in ("worm_teeth_uniform.png", "worm_teeth_binomial.png"):
        assert_png(out / name)


def test_kl_vs_cross_entropy(tmp_path):
    out = tmp_path / "figures"
    stdout = run_example("kl_vs_cross_entropy.py", out)

    rows = re.findall(r"^(softmax regression|MLP \(64 ReLU\))\s+(hard|smoothed 0\.1)"
                      r"\s+([\d.]+)\s+([\d.]+)\s*$", stdout, re.MULTILINE)
    assert len(rows) == 4, stdout
    for _, _, ce, kl in rows:
        assert ce == kl
        assert float(ce) > 0.9
    assert "accuracy curves identical for cross-entropy and KL training: True" in stdout
    gap = re.search(r"max \|accuracy\(CE\) - accuracy\(KL\)\| over all epochs: (\S+)", stdout)
    assert float(gap.group(1)) == 0.0
    offset = re.search(r"max \|CE - KL - H\(targets\)\| over all epochs: (\S+)", stdout)
    assert float(offset.group(1)) < 1e-9

    smoothed = np.full(10, 0.1 / 10)
    smoothed[0] += 0.9
    entropy = re.search(r"H\(targets\): hard (\S+) nats, smoothed (\S+) nats", stdout)
    assert float(entropy.group(1)) == 0.0
    assert entropy.group(2) == f"{scipy.stats.entropy(smoothed):.4f}"
    assert "loss curves offset by the constant entropy of the targets" in stdout
    assert re.search(r"offset by the constant entropy.*: True$", stdout, re.MULTILINE)
    for name in ("kl_vs_ce_accuracy.png", "kl_vs_ce_loss.png"):
        assert_png(out / name)


def test_compare_model_outputs(tmp_path):
    out = tmp_path / "figures"
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(EXAMPLES / "compare_model_outputs.py"),
                             "--tokens", "300", "--vocab", "3000", "--seed", "3",
                             "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stdout = result.stdout

    # the same synthetic logits, scored here with scipy in float64
    sys.path.insert(0, str(EXAMPLES))
    try:
        from compare_model_outputs import make_outputs
    finally:
        sys.path.remove(str(EXAMPLES))
    original, copy = make_outputs(300, 3000, seed=3)
    lp = scipy.special.log_softmax(original.astype(np.float64), axis=-1)
    lq = scipy.special.log_softmax(copy.astype(np.float64), axis=-1)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    agree = np.mean(original.argmax(axis=1) == copy.argmax(axis=1))

    def stat(name):
        match = re.search(rf"^\s+{name}\s+(\S+)", stdout, re.MULTILINE)
        assert match, f"no {name!r} in:\n{stdout}"
        return float(match.group(1).rstrip("%").replace(",", ""))

    assert stat("count") == 300
    # float16 logits are scored in float32: a few 1e-4 relative on the mean
    np.testing.assert_allclose(stat("mean"), kl.mean(), rtol=1e-3)
    np.testing.assert_allclose(stat("median"), np.median(kl), rtol=1e-3)
    np.testing.assert_allclose(stat("p99"), np.percentile(kl, 99), rtol=1e-3)
    np.testing.assert_allclose(stat("top-1"), 100 * agree, rtol=1e-4)
    assert_png(out / "model_outputs_kl.png")
