"""The contract users of the released detector rely on: a SavedModel exported from a checkpoint converted
from the TF Object Detection API returns, on the same image, the same detections as the reference graph.

The reference is the session's one oracle run (tests/modeling/faster_rcnn/reference.py: the OD API's
Faster R-CNN Inception-ResNet-v2 atrous at full depth, OID V4 settings at min 128 / max 192 px, 32
proposals, random weights with spread scores), converted by `oi-convert-checkpoint`. Here `oi-export`'s
library call writes the SavedModel from the converter's own config.yaml, and a fresh process runs every signature on
the parity image (PNG: the reference's exact pixels, resized 150x230 -> 125x192 by both) and on a real
photo (its JPEG bytes; the reference ran on TensorFlow's decode of them), as bytes and as pixels. Boxes agree to 1e-4
(normalised to the original image), scores to 1e-4, classes and order exactly.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.modeling.faster_rcnn import reference as reference_run

TOLERANCE = 1e-4
# Encoded bytes (the photo's JPEG, the parity image's PNG) and decoded pixels; serving_default is
# image_bytes, and tf_example decodes as image_bytes does (both checked on the tiny detector in
# test_detection.py).
SIGNATURES = ("image_bytes", "image_tensor")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """(reference run, names of the images, the signatures' outputs from a fresh process, signatures)."""
  from oi_models.serving import export_saved_model
  run = reference_run.reference(tmp_path_factory)
  tmp = tmp_path_factory.mktemp("converted_export")
  export_dir = tmp / "saved_model"
  override = (f"task.model.preprocessing.min_dimension={reference_run.MIN_DIMENSION},"
              f"task.model.preprocessing.max_dimension={reference_run.MAX_DIMENSION},"
              f"task.model.roi_generator.num_proposals={reference_run.MAX_PROPOSALS}")
  # oi-export's own calls, in this process (its command line is tested in test_detection.py).
  kind, params = export_saved_model.load_params(None, [str(run.converted / "config.yaml")], override,
                                                "detector")
  export_saved_model.export(str(export_dir), params, kind)
  names = ["parity"] + [n for n in ("photo",) if list(run.folder.glob(f"images/{n}.*"))]
  out = str(tmp / "served.npz")
  done = subprocess.run([sys.executable, "-m", "tests.serving.saved_model_runner",
                         f"--signatures={','.join(SIGNATURES)}", str(export_dir), out,
                         *(str(run.image_file(n)) for n in names)],
                        capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(out + ".json", encoding="utf-8") as f:
    signatures = json.load(f)
  return run, names, dict(np.load(out)), signatures


@pytest.mark.parametrize("signature", SIGNATURES)
def test_served_detections_are_the_reference_graphs(served, signature):
  run, names, results, _ = served
  for i, name in enumerate(names):
    expected = run.detections(name)
    num = int(expected["num_detections"])
    assert num > 10, f"{name}: the reference should detect plenty"
    assert int(results[f"{signature}/num_detections"][i]) == num, name
    classes = results[f"{signature}/detection_class_index"][i]
    np.testing.assert_array_equal(classes[:num], expected["detection_classes"][:num], err_msg=name)
    assert (classes[num:] == -1).all()
    np.testing.assert_array_equal(results[f"{signature}/detection_classes"][i, :num],
                                  expected["detection_classes"][:num] + 1)  # label-map ids
    np.testing.assert_allclose(results[f"{signature}/detection_scores"][i, :num],
                               expected["detection_scores"][:num], atol=TOLERANCE, rtol=0, err_msg=name)
    np.testing.assert_allclose(results[f"{signature}/detection_boxes"][i, :num],
                               expected["detection_boxes"][:num], atol=TOLERANCE, rtol=0, err_msg=name)
    mids = np.asarray(run.class_list.mids)[expected["detection_classes"][:num].astype(int)]
    np.testing.assert_array_equal(results[f"{signature}/detection_mids"][i, :num], mids)


def test_the_photo_was_compared(served):
  """The real photo is part of the contract whenever ../shared/openimages is there."""
  run, names, _, _ = served
  run.image_file("photo")  # skips without the shared files
  assert names == ["parity", "photo"]


def test_served_signatures_are_the_od_apis(served):
  _, _, _, signatures = served
  outputs = signatures["serving_default"]["outputs"]
  assert {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} <= set(outputs)
  assert outputs["detection_boxes"] == {"dtype": "float32", "shape": [None, 100, 4]}
