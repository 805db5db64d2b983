"""The detector SavedModel, written by oi-export from a converter-style config and reloaded in a fresh
process, against the in-process model.

One export (module fixture): the tiny (1/1/1 repeats) Faster R-CNN with random weights, three classes
under a two-level hierarchy, exported with --expand_hierarchy. The reference is computed here without
the serving code: the model's keep-aspect preprocessing and call, boxes divided by the resized size
(normalised to the original image), and the Open Images expansion done by `labels.Expander` (each box
copied to every ancestor), sorted by score.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from oi_models import labels
from oi_models.configs import faster_rcnn as faster_rcnn_config
from tests.conftest import REPO_ROOT
from tests.conftest import shared_path

CLASSES = labels.LabelMap(("/m/0k4j", "/m/01bjv", "/m/0199g"), ("Car", "Bus", "Bicycle"))
HIERARCHY = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/0k4j", "Subcategory": [{"LabelName": "/m/01bjv"}]},
    {"LabelName": "/m/0199g"}]}
BOX_TOLERANCE = 1e-5  # normalised coordinates
SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  import tf_keras
  from oi_models.modeling.faster_rcnn import model as model_lib
  tmp = tmp_path_factory.mktemp("detector")
  config = faster_rcnn_config.tiny(num_classes=len(CLASSES) + 1)
  tf_keras.utils.set_random_seed(3)
  model = model_lib.build_faster_rcnn(config)
  converted = tmp / "converted"
  prefix = tf.train.Checkpoint(model=model).save(str(converted / "ckpt"))
  CLASSES.to_csv(converted / "class_list.csv")
  (converted / "config.yaml").write_text(yaml.safe_dump(
      {"task": {"model": config.as_dict(), "init_checkpoint": prefix,
                "class_list": str(converted / "class_list.csv")}}))
  hierarchy = tmp / "hierarchy.json"
  hierarchy.write_text(json.dumps(HIERARCHY))
  export_dir = tmp / "saved_model"
  done = subprocess.run(
      [pathlib.Path(sys.executable).parent / "oi-export", "--model=detector",
       f"--config_file={converted / 'config.yaml'}", f"--export_dir={export_dir}",
       f"--hierarchy={hierarchy}", "--expand_hierarchy"], capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  photos = shared_path("images", "train_2018_pyaf")
  paths = [str(photos / "000013ba71c12506.jpg"), str(photos / "0000313e5dccf13b.jpg")]
  out = str(tmp / "served.npz")
  done = subprocess.run([sys.executable, "-m", "tests.serving.saved_model_runner", str(export_dir),
                         out, *paths], capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(out + ".json", encoding="utf-8") as f:
    signatures = json.load(f)
  return model, export_dir, dict(np.load(out)), signatures, paths, hierarchy


def _reference(model, path, hierarchy_path):
  """(boxes ymin/xmin/ymax/xmax normalised, scores, class index) after the expansion, by score."""
  image = tf.io.decode_image(open(path, "rb").read(), channels=3)
  inputs, info = model.preprocess(image)
  out = model(inputs, info[1][None], training=False)
  n = int(out["num_detections"][0])
  boxes = out["detection_boxes"][0, :n].numpy() / np.tile(info[1].numpy(), 2)
  scores = out["detection_scores"][0, :n].numpy()
  classes = out["detection_classes"][0, :n].numpy() - 1
  expander = labels.Expander(labels.Hierarchy.from_json(hierarchy_path), CLASSES)
  rows, expanded = expander.boxes(classes)
  order = np.argsort(-scores[rows], kind="stable")
  return boxes[rows][order], scores[rows][order], expanded[order], n


def test_every_signature_equals_the_in_process_model(exported):
  model, _, results, _, paths, hierarchy = exported
  references = [_reference(model, p, hierarchy) for p in paths]
  assert all(r[3] > 0 for r in references), "the random model should detect something"
  for signature in ("serving_default", "image_bytes", "image_tensor", "tf_example"):
    for i, (boxes, scores, classes, _) in enumerate(references):
      count = int(results[f"{signature}/num_detections"][i])
      assert count == len(scores), signature
      np.testing.assert_allclose(results[f"{signature}/detection_boxes"][i, :count], boxes,
                                 atol=BOX_TOLERANCE, err_msg=signature)
      np.testing.assert_allclose(results[f"{signature}/detection_scores"][i, :count], scores,
                                 atol=SCORE_TOLERANCE, err_msg=signature)
      np.testing.assert_array_equal(results[f"{signature}/detection_class_index"][i, :count], classes)
      assert (results[f"{signature}/detection_class_index"][i, count:] == -1).all()


def test_outputs_name_classes_in_both_box_orders(exported):
  _, _, results, _, _, _ = exported
  index = results["image_bytes/detection_class_index"]
  valid = index >= 0
  np.testing.assert_array_equal(results["image_bytes/detection_classes"][valid], index[valid] + 1)
  np.testing.assert_array_equal(results["image_bytes/detection_mids"][valid],
                                np.asarray(CLASSES.mids)[index[valid]])
  np.testing.assert_array_equal(results["image_bytes/detection_names"][valid],
                                np.asarray(CLASSES.names)[index[valid]])
  assert (results["image_bytes/detection_mids"][~valid] == "").all()
  tf_order = results["image_bytes/detection_boxes"]
  np.testing.assert_array_equal(results["image_bytes/detection_boxes_open_images"],
                                tf_order[..., [1, 3, 0, 2]])
  assert tf_order.min() >= 0 and tf_order.max() <= 1
  # Expansion: every Bus detection is followed by a Car copy (its parent) with the same box and score.
  bus = index == 1
  assert bus.any() and (index == 0).sum() >= bus.sum()


def test_signatures_as_tf_serving_sees_them(exported):
  _, export_dir, _, signatures, _, _ = exported
  n = 100 * 2  # max_num_detections times the longest ancestor chain (Bus, Car)
  outputs = signatures["serving_default"]["outputs"]
  assert signatures["serving_default"]["inputs"] == {"image_bytes": {"dtype": "string", "shape": [None]}}
  assert outputs["detection_boxes"] == {"dtype": "float32", "shape": [None, n, 4]}
  assert outputs["detection_scores"] == {"dtype": "float32", "shape": [None, n]}
  assert outputs["detection_classes"] == {"dtype": "float32", "shape": [None, n]}
  assert outputs["num_detections"] == {"dtype": "float32", "shape": [None]}
  assert outputs["detection_mids"] == {"dtype": "string", "shape": [None, n]}
  assert labels.LabelMap.from_csv(export_dir / "assets" / "class_list.csv") == CLASSES
  assert json.loads((export_dir / "assets" / "hierarchy.json").read_text()) == HIERARCHY
