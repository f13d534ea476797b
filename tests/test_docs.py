"""The docstring examples run, the docstrings state the contract, and
show_config() reports the build."""
import doctest
import importlib
import re
from pathlib import Path

import pytest

import klfast


@pytest.mark.parametrize("module_name", ["klfast._core.measures", "klfast._core.losses",
                                         "klfast._core.summary",
                                         "klfast._core.pairwise",
                                         "klfast._config", "klfast"])
def test_docstring_examples(module_name):
    # the installed modules: pytest --doctest-modules would import ./klfast
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0
    if module_name != "klfast":
        assert result.attempted > 0


def test_readme_examples():
    """The README's ``>>>`` examples run and print what it shows."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
              if ">>>" in b]
    assert blocks
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for i, block in enumerate(blocks):
        runner.run(doctest.DocTestParser().get_doctest(block, {}, f"README block {i}", None, 0))
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("name", ["kl", "jeffreys", "entropy", "cross_entropy"])
def test_public_function_docstrings(name):
    doc = getattr(klfast, name).__doc__
    assert doc and ">>>" in doc, "a runnable example"
    for section in ("Parameters", "Returns", "Raises", "Examples"):
        assert section in doc, section
    assert "max(p, eps)" in doc or "max(q, eps)" in doc, "the epsilon rule"
    for keyword in ("axis", "eps", "base", "normalize", "keepdims", "out", "num_threads"):
        assert re.search(rf"^\s+{keyword} :", doc, re.MULTILINE), keyword


def test_public_names():
    for name in ("kl", "jeffreys", "entropy", "cross_entropy", "DEFAULT_EPS", "__version__",
                 "show_config", "default_num_threads"):
        assert hasattr(klfast, name), name
    assert 0 < klfast.DEFAULT_EPS < 1e-6
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", klfast.__version__)


def test_show_config(capsys):
    klfast.show_config()
    text = capsys.readouterr().out
    assert klfast.__version__ in text
    assert re.search(r"openmp\b.*\b(yes|no)\b", text, re.IGNORECASE), text
    match = re.search(r"(?i)default num_threads:\s*(\d+)", text)
    assert match and int(match.group(1)) == klfast.default_num_threads(), text
    assert re.search(r"(?i)compile args:.*-O3", text), text
    level = klfast._kernels.get_isa()
    assert re.search(rf"(?i)kernels in use:\s*{level}\b", text), text
    assert re.search(r"(?i)compiled for:\s*\S+", text), text


def test_build_flags_follow_the_design(capsys):
    klfast.show_config()
    text = capsys.readouterr().out
    assert "-ffast-math" not in text
    assert "-march=native" not in text


def test_show_config_says_why_a_level_or_openmp_is_missing(capsys, monkeypatch):
    """setup.py records why it left a level or OpenMP out (a compiler that
    rejects the flags, another architecture); show_config prints it."""
    notes = ("OpenMP: the compiler rejected -fopenmp (omp.h: No such file); "
             "avx512: the compiler rejected its flags (-march=x86-64-v4: unknown)")
    monkeypatch.setattr(klfast._kernels, "MISSING_LEVELS", notes)
    monkeypatch.setattr(klfast._kernels, "build_info",
                        lambda: {"openmp": False, "compile_args": "-O3", "compiler": "cc",
                                 "build_isa": "x86-64 baseline (SSE2)"})
    klfast.show_config()
    text = capsys.readouterr().out
    assert re.search(r"OpenMP: +no \(.*the compiler rejected -fopenmp \(omp.h", text), text
    assert re.search(r"level left out: +avx512: the compiler rejected its flags", text), text
    assert re.search(r"compiler: +cc", text), text
