"""The installed distribution says what it is: its license file, authors,
classifiers and keywords, and one version everywhere.

(The sdist's contents are checked by .ci/run, which builds it, lists it and
installs klfast from it.)
"""
import importlib.metadata
from pathlib import Path

import pytest

import klfast
from klfast.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist():
    return importlib.metadata.distribution("klfast")


def test_license_file_is_installed(dist):
    assert dist.metadata.get("License-Expression") == "BSD-3-Clause"
    assert "LICENSE" in dist.metadata.get_all("License-File", [])
    licenses = [f for f in dist.files if f.name == "LICENSE"]
    assert licenses, "the wheel holds no LICENSE"
    text = licenses[0].read_text()
    assert "BSD 3-Clause License" in text
    assert "Copyright (c) 2026, The klfast developers" in text


def test_metadata(dist):
    meta = dist.metadata
    assert "The klfast developers" in meta.get("Author", "") + meta.get("Author-email", "")
    assert "kullback-leibler" in meta.get("Keywords", "")
    classifiers = meta.get_all("Classifier", [])
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)
    # no project URLs until klfast has a public home: none may be made up
    assert not meta.get_all("Project-URL") and not meta.get("Home-page")


def test_one_version(dist, capsys):
    assert dist.version == klfast.__version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"klfast {klfast.__version__}"


def test_version_is_written_once():
    """pyproject.toml reads the version from klfast/_version.py."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not run from a source tree")
    project = tomllib.loads(pyproject.read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "klfast._version.__version__"
    source = (ROOT / "klfast" / "_version.py").read_text()
    assert f'__version__ = "{klfast.__version__}"' in source
    init = (ROOT / "klfast" / "__init__.py").read_text()
    assert klfast.__version__ not in init
