"""examples/quickstart.ipynb runs from top to bottom (fresh kernel, offline) and was saved executed."""

from __future__ import annotations

import nbclient  # dev dependencies (pyproject [dev], installed by `make test`)
import nbformat

from tests.conftest import REPO

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def test_the_saved_notebook_has_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert all(c.outputs for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def test_the_notebook_runs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on any error
    texts = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "dropped (alpaca) by minhash_dedup" in texts  # explain() of a near-duplicate
    assert "DatasetDict" in texts and "train: Dataset(" in texts
    assert 'use = "reasoning_depth"' in texts  # the edited pipeline's TOML
