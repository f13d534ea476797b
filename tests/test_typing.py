"""The installed klfast is typed (PEP 561): it ships py.typed and stubs that
cover every public name, match the functions' parameters, accept typed use
under ``mypy --strict`` and reject wrong arguments, naming them.

mypy runs in a temporary folder on copies of tests/typed_usage*.py, so it
reads the installed package (its stubs in site-packages), not ./klfast.
"""
import ast
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

import klfast

HERE = Path(__file__).resolve().parent
USAGE = HERE / "typed_usage.py"
ERRORS = HERE / "typed_usage_errors.py"

# Parameters a stub may carry ahead of the functions (none now).
PENDING = set()


def _stub(name):
    path = files("klfast") / name
    assert path.is_file(), f"the installed klfast has no {name}"
    return ast.parse(path.read_text())


def test_package_is_typed():
    assert (files("klfast") / "py.typed").is_file()
    _stub("__init__.pyi")
    _stub("datasets.pyi")


def _parameters(function):
    args = function.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]


def _stub_functions(tree):
    """name -> parameter names of the stub (the union over its overloads); a
    class's are those of its __init__, or its fields for a dataclass."""
    params = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            params.setdefault(node.name, set()).update(_parameters(node))
        elif isinstance(node, ast.ClassDef):
            inits = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
            if inits:
                names = set(_parameters(inits[0])) - {"self"}
            else:
                names = {f.target.id for f in node.body if isinstance(f, ast.AnnAssign)}
            params[node.name] = names
    return params


def _stub_names(tree):
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign) and node.targets[0].id == "__all__":
            stub_all = ast.literal_eval(node.value)
    return names, stub_all


@pytest.mark.parametrize("module, stub", [(klfast, "__init__.pyi"),
                                          (klfast.datasets, "datasets.pyi")])
def test_stubs_cover_the_public_api(module, stub):
    tree = _stub(stub)
    names, stub_all = _stub_names(tree)
    assert sorted(stub_all) == sorted(module.__all__)
    assert set(module.__all__) <= names
    stub_params = _stub_functions(tree)
    for name in module.__all__:
        obj = getattr(module, name)
        if not callable(obj):
            continue
        runtime = set(inspect.signature(obj).parameters)
        stub_only = stub_params[name] - runtime
        assert runtime <= stub_params[name], f"{name}: not in the stub: {runtime - stub_params[name]}"
        assert stub_only <= PENDING, f"{name}: not taken at run time: {stub_only}"


def _mypy(tmp_path, *sources):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the test extra)")
    for source in sources:
        shutil.copy(source, tmp_path / source.name)
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "MYPY_CONFIG_FILE_DIR")}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--show-error-codes", "--hide-error-context", "--no-pretty",
         "--cache-dir", str(tmp_path / ".mypy_cache"), "--config-file", "",
         *(source.name for source in sources)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    errors = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"(\S+?):(\d+): error: (.*)", line)
        if match:
            errors.setdefault((match[1], int(match[2])), []).append(match[3])
    return proc, errors


@pytest.mark.slow  # mypy --strict in a subprocess: seconds
def test_mypy_strict(tmp_path):
    """Typed use passes; each marked wrong use fails with an error naming it."""
    proc, errors = _mypy(tmp_path, USAGE, ERRORS)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    usage_errors = {k: v for k, v in errors.items() if k[0] == USAGE.name}
    assert not usage_errors, proc.stdout
    expected = {}
    for number, line in enumerate(ERRORS.read_text().splitlines(), 1):
        marker = re.search(r'  # error: "(\w+)"$', line)
        if marker:
            expected[(ERRORS.name, number)] = marker[1]
    assert expected
    assert set(errors) == set(expected), proc.stdout
    for key, name in expected.items():
        assert any(name in message for message in errors[key]), (key, errors[key])
