"""Shared by the browser tests and their fixtures: paths, chromium flags, the server handle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"

# Lab settings for the throwaway settings dir: never autosave (outputs must not reach the
# committed notebooks), render every cell (no virtual scrolling), no news/update toasts.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
}


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: base URL, token and the directory it serves."""

    url: str
    token: str
    root: Path

    def notebook_url(self, relpath: str) -> str:
        """URL that opens `relpath` (relative to `root`) in the Lab UI."""
        return f"{self.url}/lab/tree/{relpath}?token={self.token}"
