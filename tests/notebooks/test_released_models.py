"""notebooks/released_models.ipynb top to bottom (in a file of its own: see conftest.py)."""

from tests.notebooks.conftest import check_runs_top_to_bottom


def test_released_models_runs_top_to_bottom(run_notebook, notebook_env):
  check_runs_top_to_bottom(run_notebook, notebook_env, "released_models.ipynb")
