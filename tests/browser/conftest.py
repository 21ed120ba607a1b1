"""Fixtures for the real-browser notebook tests: an isolated JupyterLab and Debian chromium.

Both fixtures are session-scoped and always shut down what they started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from labserver import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LAB_SETTINGS, REPO, LabServer
from playwright.sync_api import Browser, sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer within 120 s:\n{log.read_text()}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Path of Debian's chromium; fails (not skips) without it, since CI installs it."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian chromium (apt-get install chromium)",
                    pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="session")
def lab_server() -> Iterator[LabServer]:
    """JupyterLab on a free port with a random token, fast mode and throwaway config dirs."""
    port, token = _free_port(), secrets.token_hex(16)
    # A SIGTERM (e.g. a CI timeout) should still run the teardown below and stop the server.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="rtb-lab-jupyter-") as tmp:
        tmp_path = Path(tmp)
        _write_settings(tmp_path / "settings")
        env = dict(os.environ, RTB_LAB_FAST="1",
                   JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
                   JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
                   JUPYTER_DATA_DIR=str(tmp_path / "data"),
                   JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
                   IPYTHONDIR=str(tmp_path / "ipython"))
        # Kernels must import this checkout's rtb_lab.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        log = tmp_path / "lab.log"
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", "--allow-root",
               "--LabApp.extension_manager=readonly", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={REPO}"]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=REPO)
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_until_up(proc, url, token, log)
                yield LabServer(url=url, token=token, root=REPO)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "jupyterlab.log").write_bytes(log.read_bytes())


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[Browser]:
    """A headless Debian chromium driven by Playwright (no Playwright browser download)."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
