"""The results notebook executes against a tiny run's artifacts (so it cannot rot)."""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_mlflow import PROJECT, _env, tiny_run  # noqa: F401 - shared fixture

NOTEBOOK = PROJECT / "notebooks" / "results.ipynb"


def test_the_committed_notebook_has_no_outputs():
    """Outputs would go stale in git; the test below produces fresh ones."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(
        not cell.outputs and cell.execution_count is None for cell in code
    )
    assert "%load_ext kedro.ipython" in code[0].source


@pytest.fixture(scope="module")
def executed(tiny_run, monkeypatch_module):  # noqa: F811 - tiny_run is the fixture
    notebooks = tiny_run.path / "notebooks"
    notebooks.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, notebooks / NOTEBOOK.name)
    for key, value in _env().items():
        if os.environ.get(key) != value:
            monkeypatch_module.setenv(key, value)  # the kernel inherits this env
    notebook = nbformat.read(notebooks / NOTEBOOK.name, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebooks)}},
    ).execute()
    return notebook


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _outputs(notebook, cell_id: str) -> list:
    return next(c for c in notebook.cells if c.get("id") == cell_id).outputs


@pytest.mark.slow
def test_notebook_reproduces_the_table_and_two_figures(executed, tiny_run):  # noqa: F811
    errors = [
        o
        for c in executed.cells
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
    table = _outputs(executed, "results-table")
    html = "".join(o["data"].get("text/html", "") for o in table if "data" in o)
    assert "emomucs_late.c1d_freeze" in html and "EmoMucs-C2D late freeze" in html
    markdown = "".join(
        o["data"].get("text/markdown", "")
        for o in _outputs(executed, "results-markdown")
    )
    assert "In the paper's layout" in markdown
    for cell in ("heatmap", "scatter"):
        images = [
            o for o in _outputs(executed, cell) if "image/png" in o.get("data", {})
        ]
        assert len(images) == 1, cell
    printed = "".join(o.get("text", "") for o in _outputs(executed, "scatter"))
    assert "emomucs_late." in printed or "sources." in printed
    # the notebook worked from the project root: no stray tracking store beside it
    assert not (tiny_run.path / "notebooks" / "mlflow.db").exists()
