"""Run every tutorial notebook in a real JupyterLab + chromium and check what the reader sees.

The checker (`notebook_problems`) returns a list of problems: the tutorials must give none,
and a deliberately broken widget notebook must be reported.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from labserver import ARTIFACTS, REPO, LabServer
from playwright.sync_api import Browser, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
SCREENSHOTS = ARTIFACTS / "screenshots"
RUN_TIMEOUT_S = 600  # a hang guard: 02_mnist took over 300 s on a slow CI day
WIDGET_ERRORS = ("Error displaying widget", "model not found", "Failed to create view")

# One JS snapshot of the notebook panel: prompts, kernel status, outputs, widgets, figures.
SNAPSHOT_JS = r"""() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!nb) return null;
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim());
  const indicator = nb.querySelector('.jp-Notebook-ExecutionIndicator');
  const stderr = [...nb.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.innerText);
  const widgets = [...nb.querySelectorAll('.jp-OutputArea-output .jupyter-widgets')]
    .filter(e => !/Error displaying widget|Loading widget|model not found/.test(e.textContent))
    .length;
  const loading = [...nb.querySelectorAll('.jp-OutputArea-output')]
    .filter(e => e.textContent.trim() === 'Loading widget...').length;
  const figures = nb.querySelectorAll(
      '.jp-OutputArea-output img, .jp-OutputArea-output .js-plotly-plot').length;
  // The toolbar indicator says idle before a kernel is connected; the status bar does not.
  const bar = document.querySelector('.jp-StatusBar-Widget');
  const connected = !!bar && /\| Idle/.test(bar.innerText);
  return {prompts, status: indicator ? indicator.dataset.status : null, connected, stderr,
          widgets,
          loading, figures, text: nb.innerText};
}"""
ERROR_TEXT = re.compile(r"Traceback|^\w*(Error|Exception)\b", re.MULTILINE)


def _snapshot(page: Page) -> dict:
    """The notebook panel's state as seen in the DOM (see SNAPSHOT_JS)."""
    return page.evaluate(SNAPSHOT_JS) or {}


def _wait_for(page: Page, done: Callable[[dict], object], timeout_s: float, what: str) -> dict:
    """Poll the snapshot until `done(snapshot)` holds; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        snap = _snapshot(page)
        if snap and done(snap):
            return snap
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}: "
                               f"status={snap.get('status')}, prompts={snap.get('prompts')}")
        page.wait_for_timeout(500)


def _all_ran(snap: dict) -> bool:
    prompts = snap["prompts"]
    return (snap["status"] == "idle" and bool(prompts)
            and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts))


def _run_all_cells(page: Page) -> None:
    """Run > Run All Cells, through the menu bar like a reader would; check that it started."""
    for _ in range(3):
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Run All Cells'))").click()
        try:
            _wait_for(page, lambda s: any(p != "[ ]:" for p in s["prompts"]), 20, "the run")
            return
        except TimeoutError:
            page.keyboard.press("Escape")
    raise TimeoutError("Run > Run All Cells did not start the notebook")


def problems_in(snap: dict, expect_figure: bool = True) -> list[str]:
    """What a reader would see as broken in a finished notebook snapshot."""
    problems = [f"error output: {text.strip()[:300]}" for text in snap["stderr"]
                if ERROR_TEXT.search(text)]
    problems += [f"broken widget: {marker!r} shown" for marker in WIDGET_ERRORS
                 if marker in snap["text"]]
    if snap["loading"]:
        problems.append(f"{snap['loading']} widget output(s) stuck at 'Loading widget...'")
    if not snap["widgets"]:
        problems.append("no widget view rendered")
    if expect_figure and not snap["figures"]:
        problems.append("no figure (img or plotly plot) rendered")
    return problems


def notebook_problems(page: Page, server: LabServer, relpath: str, screenshot: Path,
                      expect_figure: bool = True) -> list[str]:
    """Open `relpath` in Lab, run all cells, screenshot, and list what is broken."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(server.notebook_url(relpath))
    problems: list[str] = []
    try:
        _wait_for(page, lambda s: s["status"] == "idle" and s["connected"], 120, "an idle kernel")
        page.wait_for_timeout(1000)
        _run_all_cells(page)
    except (TimeoutError, PlaywrightTimeout) as exc:
        problems.append(str(exc))
    if not problems:
        try:
            _wait_for(page, _all_ran, RUN_TIMEOUT_S, "every cell to run")
        except TimeoutError as exc:
            problems.append(str(exc))
    # Show the whole notebook at once so every output is laid out, then let widgets settle.
    height = page.evaluate("""() => {
      const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
      const s = nb && nb.querySelector('.jp-WindowedPanel-outer');
      return s ? s.scrollHeight : 1000; }""")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 200, 16000)})
    page.evaluate("""() => {
      const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
      const s = nb && nb.querySelector('.jp-WindowedPanel-outer');
      if (s) s.scrollTop = 0; }""")
    page.wait_for_timeout(3000)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    return problems + problems_in(_snapshot(page), expect_figure=expect_figure)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page per notebook."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.mark.parametrize("name", NOTEBOOKS, ids=lambda n: n.removesuffix(".ipynb"))
def test_notebook_runs_cleanly_in_browser(name: str, page: Page, lab_server: LabServer) -> None:
    """Every tutorial runs in Lab with widgets and figures and without visible errors."""
    shot = SCREENSHOTS / f"{name.removesuffix('.ipynb')}.png"
    problems = notebook_problems(page, lab_server, f"notebooks/{name}", shot)
    assert problems == [], f"{name} (screenshot {shot}):\n" + "\n".join(problems)


def _broken_widget_notebook(path: Path) -> None:
    """A notebook showing one good slider and one widget view whose model does not exist."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import ipywidgets\nipywidgets.IntSlider(3)"),
        nbformat.v4.new_code_cell(
            "from IPython.display import display\n"
            "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'does-not-exist',"
            " 'version_major': 2, 'version_minor': 0}, 'text/plain': 'broken'}, raw=True)"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_checker_reports_a_broken_widget(page: Page, lab_server: LabServer) -> None:
    """The same checker flags a widget whose model cannot be found."""
    relpath = "test-artifacts/browser-fixtures/broken_widget.ipynb"
    _broken_widget_notebook(lab_server.root / relpath)
    problems = notebook_problems(page, lab_server, relpath, SCREENSHOTS / "broken_widget.png",
                                 expect_figure=False)
    assert any("Error displaying widget" in p or "model not found" in p for p in problems), \
        problems
    assert not any("no widget view rendered" in p for p in problems), problems
