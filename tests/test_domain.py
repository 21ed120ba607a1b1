"""The domain layer: the registry, a module graph without cycles, and a tiny domain
registered at test time that runs through the generic trainer, CLI and comparison."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from example_domain import Gauss1D

import rtb_lab
from rtb_lab import domains
from rtb_lab.cli import main
from rtb_lab.compare import compare

PACKAGE_DIR = Path(rtb_lab.__file__).parent


def _modules() -> dict[str, Path]:
    found = {"rtb_lab": PACKAGE_DIR / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "rtb_lab."):
        relative = Path(*info.name.split(".")[1:])
        path = PACKAGE_DIR / relative / "__init__.py" if info.ispkg else \
            PACKAGE_DIR / relative.with_suffix(".py")
        found[info.name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """rtb_lab modules `path` imports anywhere (module level or inside functions)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from pkg import module` imports pkg.module
                full = f"{node.module}.{alias.name}"
                targets.add(full if full in modules else node.module)
    return {t for t in targets if t in modules}


def test_the_module_graph_has_no_cycle_and_every_module_imports_fresh():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in graph[name]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(
                    stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target, stack + [target])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert "rtb_lab.domains.mnist.guided" in graph  # the walk saw the subpackages
    code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)"
    done = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_domain_is_named_outside_its_folder():
    for path in PACKAGE_DIR.rglob("*.py"):
        if "domains" not in path.relative_to(PACKAGE_DIR).parts:
            text = path.read_text()
            assert '== "mnist"' not in text and '== "toy2d"' not in text, path


def test_the_registry_lists_and_checks_domains():
    assert domains.names()[:2] == ["toy2d", "mnist"]
    assert domains.get("toy2d").event_shape == (2,)
    with pytest.raises(KeyError, match=r"unknown domain 'cifar'; choose one of \['toy2d'"):
        domains.get("cifar")
    with pytest.raises(TypeError, match=r"lacks \[.*'make_family'"):
        domains.register(object())
    clash = Gauss1D()
    clash.name = "toy2d"
    with pytest.raises(ValueError, match="built-in"):
        domains.register(clash)


@pytest.fixture
def gauss1d():
    domain = domains.register(Gauss1D())
    yield domain
    domains.unregister(domain.name)


def test_a_new_domain_runs_through_the_generic_cli_and_recovers_its_posterior(
        gauss1d, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "gauss1d (1-D mixture" in capsys.readouterr().out  # listed from the registry
    assert main(["finetune", "gauss1d", "--fast", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["steps"] == 150 and metrics["target"] == "0.25"
    assert metrics["tv"] <= 0.05  # measured 0.034 (seed 0; 0.017, 0.034 for seeds 1, 2)
    assert metrics["log_z_err"] <= 0.05
    assert (tmp_path / "checkpoint.pt").is_file()
    assert main(["finetune", "gauss1d", "--target", "steep", "--quiet"]) == 2
    assert "could not convert" in capsys.readouterr().err


def test_a_new_domain_runs_through_the_generic_comparison(gauss1d):
    table = compare("gauss1d", seeds=1)
    assert table.domain == "gauss1d" and table.metrics == gauss1d.metrics
    summary = table.summary()["rtb"]
    assert summary["evals"]["mean"] <= gauss1d.budgets[0]
    assert summary["tv"]["mean"] <= 0.05
