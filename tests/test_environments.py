"""The environments users open the tutorials in: Binder and conda, checked offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _names(requirements: list[str]) -> set[str]:
    """Package names of requirement strings (lower case, no versions or extras)."""
    return {re.split(r"[<>=!~\[; ]", r.strip(), maxsplit=1)[0].lower() for r in requirements
            if r.strip() and not r.strip().startswith(("#", "-"))}


def test_binder_requirements_name_every_runtime_and_notebook_dependency():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = _names(project["dependencies"] + project["optional-dependencies"]["notebooks"])
    listed = _names((ROOT / "binder" / "requirements.txt").read_text().splitlines())
    assert needed <= listed, f"binder/requirements.txt misses {sorted(needed - listed)}"
    assert "torch==2.13.0" in (ROOT / "binder" / "requirements.txt").read_text()


def test_binder_post_build_installs_the_package_without_dependencies():
    script = (ROOT / "binder" / "postBuild").read_text()
    assert "set -e" in script
    assert re.search(r"pip install --no-deps -e \.", script)


def test_environment_yml_installs_the_package_with_its_extras():
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e") and "notebooks" in line and "test" in line
               for line in pip_section)
