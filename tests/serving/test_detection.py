"""The detector SavedModel, written by oi-export from a converter-style config and reloaded in a fresh
process, against the in-process model.

One export (module fixture): the tiny (1/1/1 repeats) Faster R-CNN with random weights over the sample
dataset's ten box classes and hierarchy (`oi-make-sample`), exported with --expand_hierarchy. The reference is computed here without
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
from oi_models.datasets import make_sample
from tests.conftest import REPO_ROOT
from tests.conftest import shared_path

BOX_TOLERANCE = 1e-5  # normalised coordinates
SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def export(tmp_path_factory):
  """(model, SavedModel folder, hierarchy, classes, sample) of one oi-export run."""
  import tf_keras
  from oi_models.modeling.faster_rcnn import model as model_lib
  tmp = tmp_path_factory.mktemp("detector")
  sample = tmp / "sample"
  make_sample.make_sample(sample, num_images=8, splits=(2, 2, 4))
  classes = labels.LabelMap.from_csv(sample / "class-descriptions-boxable.csv")
  hierarchy = sample / "bbox_labels_600_hierarchy.json"
  config = faster_rcnn_config.tiny(num_classes=len(classes) + 1)
  tf_keras.utils.set_random_seed(3)
  model = model_lib.build_faster_rcnn(config)
  converted = tmp / "converted"
  prefix = tf.train.Checkpoint(model=model).save(str(converted / "ckpt"))
  classes.to_csv(converted / "class_list.csv")
  (converted / "config.yaml").write_text(yaml.safe_dump(
      {"task": {"model": config.as_dict(), "init_checkpoint": prefix,
                "class_list": str(converted / "class_list.csv")}}))
  export_dir = tmp / "saved_model"
  done = subprocess.run(
      [pathlib.Path(sys.executable).parent / "oi-export", "--model=detector",
       f"--config_file={converted / 'config.yaml'}", f"--export_dir={export_dir}",
       f"--hierarchy={hierarchy}", "--expand_hierarchy"], capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  return model, export_dir, hierarchy, classes, sample


@pytest.fixture(scope="module")
def detect_started(export, tmp_path_factory):
  """oi-detect, started in the background (it runs while the SavedModel is reloaded for `exported`):
  good and broken files (a folder, a glob and an image list) and the sample's test split (a second
  folder, evaluated below)."""
  from tests.serving import image_files
  _, export_dir, _, _, sample = export
  tmp = tmp_path_factory.mktemp("detect")
  files = image_files.write(tmp / "images")
  (tmp / "list.txt").write_text("images/png.png\nimages/notes.jpg\n")
  out = tmp / "out"
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      [pathlib.Path(sys.executable).parent / "oi-detect", f"--saved_model={export_dir}",
       f"--image_list={tmp / 'list.txt'}", "--batch_size=3", f"--output_csv={out}/p.csv",
       f"--output_kaggle={out}/k.csv", f"--output_jsonl={out}/p.jsonl", f"--draw_dir={out}/drawn",
       f"--failures_csv={out}/failures.csv", "--draw_min_score=0", str(tmp / "images"),
       str(tmp / "images" / "*.png"), str(tmp / "missing" / "*.jpg"), str(sample / "test")],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
  yield process, files, out, sorted(p.stem for p in (sample / "test").iterdir())
  if process.poll() is None:
    process.kill()
    process.communicate()


@pytest.fixture(scope="module")
def exported(export, detect_started, tmp_path_factory):
  """The export, reloaded in a fresh process: every signature's outputs on two real photos."""
  del detect_started  # started first, so that it overlaps this reload
  model, export_dir, hierarchy, classes, sample = export
  photos = shared_path("images", "train_2018_pyaf")
  paths = [str(photos / "000013ba71c12506.jpg"), str(photos / "0000313e5dccf13b.jpg")]
  out = str(tmp_path_factory.mktemp("served") / "served.npz")
  done = subprocess.run([sys.executable, "-m", "tests.serving.saved_model_runner", str(export_dir),
                         out, *paths], capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(out + ".json", encoding="utf-8") as f:
    signatures = json.load(f)
  return model, export_dir, dict(np.load(out)), signatures, paths, hierarchy, classes, sample


def _reference(model, path, hierarchy_path, classes):
  """(boxes ymin/xmin/ymax/xmax normalised, scores, class index) after the expansion, by score."""
  image = tf.io.decode_image(open(path, "rb").read(), channels=3)
  inputs, info = model.preprocess(image)
  out = model(inputs, info[1][None], training=False)
  n = int(out["num_detections"][0])
  boxes = out["detection_boxes"][0, :n].numpy() / np.tile(info[1].numpy(), 2)
  scores = out["detection_scores"][0, :n].numpy()
  detected = out["detection_classes"][0, :n].numpy() - 1
  expander = labels.Expander(labels.Hierarchy.from_json(hierarchy_path), classes)
  rows, expanded = expander.boxes(detected)
  order = np.argsort(-scores[rows], kind="stable")
  return boxes[rows][order], scores[rows][order], expanded[order], n


def test_every_signature_equals_the_in_process_model(exported):
  model, _, results, _, paths, hierarchy, classes, _ = exported
  references = [_reference(model, p, hierarchy, classes) for p in paths]
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
  _, _, results, _, _, _, classes, _ = exported
  index = results["image_bytes/detection_class_index"]
  valid = index >= 0
  np.testing.assert_array_equal(results["image_bytes/detection_classes"][valid], index[valid] + 1)
  np.testing.assert_array_equal(results["image_bytes/detection_mids"][valid],
                                np.asarray(classes.mids)[index[valid]])
  np.testing.assert_array_equal(results["image_bytes/detection_names"][valid],
                                np.asarray(classes.names)[index[valid]])
  assert (results["image_bytes/detection_mids"][~valid] == "").all()
  tf_order = results["image_bytes/detection_boxes"]
  np.testing.assert_array_equal(results["image_bytes/detection_boxes_open_images"],
                                tf_order[..., [1, 3, 0, 2]])
  assert tf_order.min() >= 0 and tf_order.max() <= 1


def test_signatures_as_tf_serving_sees_them(exported):
  _, export_dir, _, signatures, _, hierarchy, classes, _ = exported
  table = labels.Hierarchy.from_json(hierarchy).ancestor_table(classes)
  n = 100 * int(np.diff(table.indptr).max())  # max_num_detections times the longest class + ancestors
  assert n > 100
  outputs = signatures["serving_default"]["outputs"]
  assert signatures["serving_default"]["inputs"] == {"image_bytes": {"dtype": "string", "shape": [None]}}
  assert outputs["detection_boxes"] == {"dtype": "float32", "shape": [None, n, 4]}
  assert outputs["detection_scores"] == {"dtype": "float32", "shape": [None, n]}
  assert outputs["detection_classes"] == {"dtype": "float32", "shape": [None, n]}
  assert outputs["num_detections"] == {"dtype": "float32", "shape": [None]}
  assert outputs["detection_mids"] == {"dtype": "string", "shape": [None, n]}
  assert labels.LabelMap.from_csv(export_dir / "assets" / "class_list.csv") == classes
  assert (export_dir / "assets" / "hierarchy.json").read_text() == hierarchy.read_text()


@pytest.fixture(scope="module")
def detected(detect_started):
  """(oi-detect's completed process, the files it read, its output folder, the test split's ids)."""
  process, files, out, test_ids = detect_started
  stdout, stderr = process.communicate(timeout=900)
  done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
  return done, files, out, test_ids


def test_detect_writes_every_format_and_reports_bad_images(detected, exported):
  import pandas as pd
  done, files, out, test_ids = detected
  _, _, results, _, paths, _, classes, _ = exported
  assert done.returncode == 1, done.stdout + done.stderr[-2000:]
  failures = pd.read_csv(out / "failures.csv")
  reasons = {pathlib.Path(p).name: r for p, r in zip(failures.path, failures.reason)}
  assert reasons == dict(files["bad"], **{"*.jpg": "not_found"}), failures
  assert f"{6 + len(test_ids)} images done, 4 failed" in done.stdout
  every = pd.read_csv(out / "p.csv")
  assert list(every.columns) == ["ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax"]
  assert set(every.ImageID) == set(files["good"]) | set(test_ids)
  rows = every[every.ImageID.isin(files["good"])]
  assert set(rows.LabelName) <= set(classes.mids)
  # The photo's rows are the SavedModel's own outputs for its bytes (the fresh-process run above).
  i = [pathlib.Path(p).stem for p in paths].index("0000313e5dccf13b")
  n = int(results["image_bytes/num_detections"][i])
  photo = rows[rows.ImageID == "0000313e5dccf13b"]
  np.testing.assert_allclose(photo[["XMin", "XMax", "YMin", "YMax"]].to_numpy(),
                             results["image_bytes/detection_boxes_open_images"][i, :n], atol=1e-6)
  np.testing.assert_array_equal(photo.LabelName, results["image_bytes/detection_mids"][i, :n])
  # EXIF orientation is ignored, as the builder does: the same pixels, the same detections.
  plain = rows[rows.ImageID == "plain"].drop(columns="ImageID").to_numpy()
  np.testing.assert_array_equal(rows[rows.ImageID == "exif_rotated"].drop(columns="ImageID").to_numpy(), plain)
  kaggle = pd.read_csv(out / "k.csv", keep_default_na=False)
  assert sorted(kaggle.ImageId) == sorted(files["good"] + test_ids)
  assert sum(len(s.split()) for s in kaggle.PredictionString) == 6 * len(every)
  lines = [json.loads(line) for line in (out / "p.jsonl").read_text().splitlines()]
  assert sorted(x["ImageID"] for x in lines) == sorted(files["good"] + test_ids)
  assert sum(len(x["detections"]) for x in lines) == len(every)
  assert sorted(p.stem for p in (out / "drawn").iterdir()) == sorted(files["good"] + test_ids)


def test_detect_csv_evaluates_with_oi_evaluate(exported, detected, tmp_path):
  """oi-detect's rows of the sample's test images, evaluated by oi-evaluate on their ground truth."""
  import pandas as pd
  _, _, _, _, _, hierarchy, _, sample = exported
  _, _, out, test_ids = detected
  rows = pd.read_csv(out / "p.csv")
  csv = tmp_path / "test.csv"
  rows[rows.ImageID.isin(test_ids)].to_csv(csv, index=False)
  assert set(pd.read_csv(csv).ImageID) == set(test_ids)
  done = subprocess.run(
      [pathlib.Path(sys.executable).parent / "oi-evaluate", "--task=detection",
       f"--boxes={sample / 'test-annotations-bbox.csv'}",
       f"--image_labels={sample / 'test-annotations-human-imagelabels.csv'}",
       f"--class_list={sample / 'class-descriptions-boxable.csv'}", f"--hierarchy={hierarchy}",
       f"--predictions={csv}", f"--output_dir={tmp_path / 'eval'}"],
      capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout + done.stderr[-2000:]
  metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  assert metrics, metrics


def test_export_traces_the_detector_once(export, tmp_path, monkeypatch):
  """Every signature and the save reuse one trace of the per-image graph (a second trace of the
  full-depth detector is ~13 s of an export)."""
  from oi_models.serving import detection
  from oi_models.serving import export_base
  model, _, _, classes, _ = export
  traced = []
  detect_image = detection.DetectorModule.detect_image
  monkeypatch.setattr(detection.DetectorModule, "detect_image",
                      lambda self, image: traced.append(1) or detect_image(self, image))
  module = detection.DetectorModule(faster_rcnn_config.tiny(num_classes=len(classes) + 1),
                                    label_map=classes, model=model)
  export_base.save(module, str(tmp_path / "saved_model"))
  assert len(traced) == 1
