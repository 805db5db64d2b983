"""Every notebook in notebooks/ runs top to bottom (fixtures and how: conftest.py), and the harness
itself: the kernel is this interpreter, a failing cell fails the run, notebooks carry no outputs.
released_models.ipynb runs in test_released_models.py."""

import pathlib
import sys

import nbformat
import pytest

from tests.notebooks.conftest import NOTEBOOKS
from tests.notebooks.conftest import NOTEBOOKS_DIR
from tests.notebooks.conftest import check_runs_top_to_bottom
from tests.notebooks.conftest import outputs_text

SLOW = {"released_models.ipynb"}  # run by test_released_models.py


def test_the_kernel_is_this_interpreter(run_notebook):
  nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
      "import os, sys\nprint(sys.executable)\nprint(os.getcwd())")])
  executed, _ = run_notebook(nb)
  executable, cwd = outputs_text(executed).split()
  assert pathlib.Path(executable).resolve() == pathlib.Path(sys.executable).resolve()
  assert pathlib.Path(cwd).resolve() == NOTEBOOKS_DIR.resolve()


def test_a_failing_cell_fails_the_run(run_notebook):
  from nbclient.exceptions import CellExecutionError  # pylint: disable=import-outside-toplevel
  nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                       nbformat.v4.new_code_cell("raise ValueError('cell 2 fails')"),
                                       nbformat.v4.new_code_cell("print('not reached')")])
  with pytest.raises(CellExecutionError, match="cell 2 fails"):
    run_notebook(nb)


def test_the_expected_notebooks_exist():
  assert set(NOTEBOOKS) == {"explore_dataset.ipynb", "evaluate_predictions.ipynb", "quickstart.ipynb",
                            "released_models.ipynb"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
  nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
  nbformat.validate(nb)
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, f"{name} cell {i} has outputs"


@pytest.mark.parametrize("name", sorted(set(NOTEBOOKS) - SLOW))
def test_notebook_runs_top_to_bottom(run_notebook, notebook_env, name):
  check_runs_top_to_bottom(run_notebook, notebook_env, name)
