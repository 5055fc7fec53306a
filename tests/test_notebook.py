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


def test_notebook_runs_top_to_bottom_on_a_copied_model_folder(portable_model, this_python_kernel, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("VIDEOBERT_PROGRESS", "0")
    monkeypatch.setenv("VIDEOBERT_MODEL", str(portable_model["copy"]))  # nothing but the model folder (and the videos)
    monkeypatch.setenv("VIDEOBERT_DEVICE", "cpu")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = next(cell for cell in nb.cells[2:] if cell.cell_type == "code")  # the first cell after the imports
    assert len(first.source.strip().splitlines()) == 3 and "from_pretrained" in first.source
    client = NotebookClient(nb, timeout=180, kernel_name=this_python_kernel,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert "query: 'now the red circle moves left'" in text
    assert "chance" in text and "alignment accuracy" in text and "zero-shot colour of hit #1" in text
    assert "->" in text and "alignment with" in text  # text-to-video, and a video file scored
    assert "no captioner at" in text and "the segment goes on with" in text  # a model folder alone has no captioner
    # the hits as cards: a filmstrip and a player at each segment, embedded (no server)
    cards = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert len(cards) == 1 and cards[0].count('class="vb-card"') >= 1
    assert cards[0].count("data:image/jpeg;base64,") == cards[0].count("data:video/mp4;base64,") == cards[0].count('class="vb-card"')
    # zero-shot plot, the best hit's exemplars, the text-to-video exemplars, the forecast
    assert len(figures) == 4
