"""The environments users open the tutorials in: Binder and conda, checked offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BINDER = ROOT / "binder"
DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"


def _names(requirements: list[str]) -> set[str]:
    """Package names of requirement strings (lower case, no versions or extras)."""
    return {re.split(r"[<>=!~\[; ]", r.strip(), maxsplit=1)[0].lower() for r in requirements
            if r.strip() and not r.strip().startswith(("#", "-"))}


def test_binder_requirements_name_every_runtime_and_notebook_dependency():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    needed = _names(project["dependencies"] + extras["notebooks"] + extras["control"])
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


def test_binder_pins_the_python_of_environment_yml():
    # Without runtime.txt repo2docker falls back to its own default Python (3.10 in 2026.4).
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime == "python-3.11"
    assert "  - python=3.11" in (ROOT / "environment.yml").read_text().splitlines()


def _run_post_build(tmp_path: Path, pip_exit: int = 0) -> subprocess.CompletedProcess:
    """Run binder/postBuild as Binder does, with a stand-in `pip` and a throwaway HOME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pip = bin_dir / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pip_calls"\nexit {pip_exit}\n')
    pip.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", HOME=str(tmp_path / "home"))
    return subprocess.run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _lab_overrides(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".jupyter" / "labconfig" / "default_setting_overrides.json"


def test_binder_post_build_runs_and_sets_python_files_to_open_as_notebooks(tmp_path):
    done = _run_post_build(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pip_calls").read_text().splitlines() == ["install --no-deps -e ."]
    settings = json.loads(_lab_overrides(tmp_path).read_text())
    assert settings == {DOCMANAGER: {"defaultViewers": {"python": "Jupytext Notebook"}}}


def test_binder_post_build_stops_at_the_first_failure(tmp_path):
    done = _run_post_build(tmp_path, pip_exit=3)
    assert done.returncode == 3
    assert not _lab_overrides(tmp_path).exists()


def test_jupyterlab_reads_the_post_build_settings_as_the_docmanager_default(tmp_path, monkeypatch):
    """What /lab/api/settings serves: the override is merged into the schema's default."""
    pytest.importorskip("jupyterlab_server")
    from jupyter_core.paths import jupyter_config_dir, jupyter_path
    from jupyter_server.services.config.manager import ConfigManager
    from jupyterlab_server.settings_utils import get_settings

    assert _run_post_build(tmp_path).returncode == 0
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_NO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert Path(jupyter_config_dir()) == tmp_path / "home" / ".jupyter"
    overrides = ConfigManager(config_dir_name="labconfig").get("default_setting_overrides")
    lab_dir = next((Path(p) for p in jupyter_path("lab")
                    if (Path(p) / "schemas" / "@jupyterlab" / "docmanager-extension").is_dir()),
                   None)
    if lab_dir is None:
        pytest.skip("JupyterLab's schemas are not installed")
    settings, _ = get_settings(str(lab_dir / "settings"), str(lab_dir / "schemas"),
                               str(tmp_path / "user-settings"), DOCMANAGER, overrides=overrides)
    default = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert default.get("python") == "Jupytext Notebook"


def test_viewer_is_the_factory_that_the_jupytext_labextension_registers_for_python(tmp_path):
    assert _run_post_build(tmp_path).returncode == 0
    viewer = json.loads(_lab_overrides(tmp_path).read_text())[DOCMANAGER]["defaultViewers"]
    pytest.importorskip("jupytext")
    from jupyter_core.paths import jupyter_path

    ext = next((Path(p) / "jupyterlab-jupytext" for p in jupyter_path("labextensions")
                if (Path(p) / "jupyterlab-jupytext" / "package.json").is_file()), None)
    if ext is None:
        pytest.skip("jupytext's JupyterLab extension (jupyterlab-jupytext) is not installed")
    bundle = "\n".join(f.read_text(errors="replace") for f in (ext / "static").glob("*.js"))
    factories = set(re.findall(r"\bFACTORY\s*=\s*\"([^\"]+)\"", bundle))
    file_types = re.search(r"\bFILE_TYPES\s*=\s*\[([^\]]*)\]", bundle)
    assert factories and file_types, f"no FACTORY / FILE_TYPES found in {ext / 'static'}"
    assert viewer["python"] in factories
    assert '"python"' in file_types.group(1)
    # jupytext's own `jupytext-config set-default-viewer` names the same factory.
    labconfig = pytest.importorskip("jupytext_config.labconfig")
    ours = labconfig.LabConfig(settings_file=tmp_path / "x.json").set_default_viewers(["python"])
    assert ours.get_viewers() == viewer


def _repo2docker() -> list[str] | None:
    try:
        import repo2docker  # noqa: F401
    except ImportError:
        exe = shutil.which("repo2docker")
        return [exe] if exe else None
    return [sys.executable, "-m", "repo2docker"]


def test_repo2docker_dockerfile_installs_requirements_and_runs_post_build(tmp_path):
    """`repo2docker --no-build` renders the Dockerfile without Docker (repo2docker is never a
    dependency: `pip install jupyter-repo2docker` into a side venv and put it on PATH)."""
    command = _repo2docker()
    if command is None:
        pytest.skip("repo2docker is not installed (pip install jupyter-repo2docker)")
    done = subprocess.run([*command, "--no-build", "--debug", str(ROOT)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Building conda environment for python=3.11" in out
    assert "Python version unspecified" not in out
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in out
    assert "RUN ./binder/postBuild" in out
