"""The notebooks in notebooks/ run top to bottom on small data, and are kept in git without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

#: The parameters each notebook runs with here: small data, the same code paths.
SMALL = {
    "01_decision_service": "DECISIONS = 30",
    "02_generations_and_ope": "DAYS = 15\nDECISIONS_PER_DAY = 250\nSEED = 1",
    "03_blind_period_sufficiency": "DAYS = 12\nDECISIONS_PER_DAY = 120\nSEED = 3\nGATE_DAYS = [0, 200]",
}


def test_every_notebook_is_tested() -> None:
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    import nbformat

    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        "strip the outputs before committing"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_top_to_bottom(name: str, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    parameters = [cell for cell in book.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "each notebook has one cell tagged 'parameters'"
    parameters[0].source = SMALL[name]
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
