"""Notebooks: .py sources and .ipynb pairs in sync, committed without outputs, thin.

Executing them is nbval's job: `make test` runs `pytest --nbval-lax notebooks/`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.py"))


def test_every_tutorial_exists():
    names = {p.stem for p in SOURCES}
    assert {"00_quickstart", "01_toy_2d", "01b_compare_2d"} <= names


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync_and_has_no_outputs(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} missing: run `jupytext --sync {source}`"
    from_py = jupytext.read(source)
    from_ipynb = jupytext.read(paired)
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(from_py) == cells(from_ipynb), \
        f"{paired.name} is out of sync with {source.name}: run `jupytext --sync {source}`"
    raw = json.loads(paired.read_text())
    with_outputs = [i for i, c in enumerate(raw["cells"])
                    if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_outputs, f"{paired.name} has outputs in cells {with_outputs}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_thin_and_starts_with_install_and_device(source):
    text = source.read_text()
    assert not re.search(r"^\s*(def|class) ", text, re.MULTILINE), "move logic into rtb_lab"
    code_lines = [line for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    assert len(code_lines) <= 150
    first_code = jupytext.read(source).cells
    first_code = next(c.source for c in first_code if c.cell_type == "code")
    assert "find_spec(\"rtb_lab\")" in first_code and "get_device()" in first_code
