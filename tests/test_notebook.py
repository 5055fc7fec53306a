"""notebooks/retrieval.ipynb runs top to bottom against a small trained run."""

import json
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "retrieval.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec running the interpreter of this test session (the project's venv)."""
    folder = tmp_path / "jupyter" / "kernels" / "videobert-test"
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "videobert tests", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "videobert-test"


def test_notebook_runs_top_to_bottom(eval_demo_run, this_python_kernel, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("VIDEOBERT_PROGRESS", "0")
    monkeypatch.setenv("VIDEOBERT_RUN", str(eval_demo_run["run"]))
    monkeypatch.setenv("VIDEOBERT_CORPUS", str(eval_demo_run["corpus"]))
    monkeypatch.setenv("VIDEOBERT_SPLIT", "train")
    monkeypatch.setenv("VIDEOBERT_DEVICE", "cpu")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name=this_python_kernel,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert "query: 'now the red circle moves left'" in text
    assert "chance" in text and "alignment accuracy" in text and "zero-shot" in text
    assert "->" in text  # the text-to-video line
    # filmstrips, zero-shot plot, the best hit's exemplars, the text-to-video exemplars
    assert len(figures) == 4
