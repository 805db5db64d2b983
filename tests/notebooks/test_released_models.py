"""notebooks/released_models.ipynb top to bottom (in a file of its own: see conftest.py).

The detector stand-in comes from the reference oracle run that the detector tests share within a
session (tests/modeling/faster_rcnn/reference.py: the sample's ten classes, 128/192 px, 32 proposals,
as the notebook's own run would be), so the suite builds the TF OD API graph once; run alone, this test
makes that run itself. The notebook still converts the checkpoint and checks the converted detector
against the reference's detections.
"""

from tests.modeling.faster_rcnn import reference
from tests.notebooks.conftest import check_runs_top_to_bottom


def test_released_models_runs_top_to_bottom(run_notebook, notebook_env, tmp_path_factory):
  # The notebook converts with these settings (its MIN_DIMENSION, MAX_DIMENSION, PROPOSALS).
  assert (reference.MIN_DIMENSION, reference.MAX_DIMENSION, reference.MAX_PROPOSALS) == (128, 192, 32)
  shared = reference.reference(tmp_path_factory)
  # Two steps of the full-depth detector's fine-tuning (seconds each) show the path.
  env = dict(notebook_env, OI_DETECTOR_ORACLE_DIR=str(shared.folder), OI_DETECTOR_FINETUNE_STEPS="2")
  check_runs_top_to_bottom(run_notebook, env, "released_models.ipynb")
