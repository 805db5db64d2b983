"""Running notebooks/*.ipynb top to bottom, as a user runs them, on the sample data (fixtures).

Each notebook runs in a fresh IPython kernel (nbclient) whose interpreter is this test's own (the
.venv's python: a kernelspec written into a temporary folder, so nothing in the user's home is read or
written; IPython's profile and Jupyter's runtime files go to the temporary folder too). The kernel's
working directory is notebooks/, as when a user opens the notebook there. A cell that raises fails the
test with the cell and its traceback.

The notebooks read their paths and sizes from environment variables (their first code cell lists them,
with defaults that work from the repository): here every output goes to a temporary folder, and the
training steps are few, so the whole set runs in a few minutes on a 2-core machine. Notebooks are
stored without outputs (checked in test_notebooks.py), so the repository holds no stale results.
The notebooks are split over two test files so that `pytest -n 2 --dist loadfile` runs the slowest
(released_models, whose reference checkpoints come from the oracles) beside the others.
"""

import json
import os
import pathlib
import sys
import time

import nbformat
import pytest
from jupyter_client import kernelspec
from jupyter_client import manager
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL_NAME = "oi-models-test"
CELL_TIMEOUT = 900  # seconds per cell; a loaded 2-core machine is several times slower than a quiet one


@pytest.fixture(scope="module")
def jupyter_dirs(tmp_path_factory):
  """A kernelspec for this interpreter and private IPython/Jupyter folders (the home is left alone)."""
  root = tmp_path_factory.mktemp("jupyter")
  spec_dir = root / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "oi_models (test)", "language": "python"}))
  return root


@pytest.fixture
def run_notebook(jupyter_dirs, monkeypatch):
  """run_notebook(notebook, **env) -> (executed notebook, seconds)."""
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter_dirs / "runtime"))  # connection files

  def run(nb, keep_as=None, **env):
    specs = kernelspec.KernelSpecManager(kernel_dirs=[str(jupyter_dirs / "kernels")],
                                         ensure_native_kernel=False)
    km = manager.KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    kernel_env = dict(os.environ, IPYTHONDIR=str(jupyter_dirs / "ipython"),
                      MPLCONFIGDIR=str(jupyter_dirs / "matplotlib"), **env)
    start = time.perf_counter()
    try:
      client.execute(env=kernel_env)
    finally:  # The executed copy (outputs, pictures, cell timings) to look at, never the repository's.
      if km.has_kernel:  # nbclient leaves a kernel it was given running (it kept 1.5 GB each).
        km.shutdown_kernel(now=True)
      if keep_as:
        nbformat.write(nb, keep_as)
    return nb, time.perf_counter() - start

  return run


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
  """Environment of the notebooks' parameter cells: outputs in a temporary folder, few steps."""
  out = tmp_path_factory.mktemp("notebook_out")
  shared = pathlib.Path(os.environ.get("OI_SHARED", REPO_ROOT.parent / "shared" / "openimages"))
  return {"OI_NOTEBOOK_OUT": str(out), "OI_SHARED": str(shared.resolve()),  # the kernel's cwd differs
          "OI_CLASSIFIER_STEPS": "20", "OI_DETECTOR_STEPS": "1", "OI_FINETUNE_STEPS": "10",
          "OI_EVAL_IMAGES": "3"}


def outputs_text(nb) -> str:
  return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))


def check_runs_top_to_bottom(run_notebook, notebook_env, name):
  """Executes notebooks/<name> with `notebook_env`; the executed copy is kept in its output folder."""
  nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
  executed, seconds = run_notebook(
      nb, keep_as=pathlib.Path(notebook_env["OI_NOTEBOOK_OUT"]) / f"executed_{name}", **notebook_env)
  print(f"{name}: {seconds:.1f} s")
  errors = [out for cell in executed.cells if cell.cell_type == "code"
            for out in cell.outputs if out.output_type == "error"]
  assert not errors
  # The last cell of every notebook prints this; seeing it proves the run reached the end.
  assert "notebook finished" in outputs_text(executed)
