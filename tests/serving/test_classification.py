"""The classifier SavedModel, written by oi-export and reloaded in a fresh process, against the model.

One export (module fixture): the tiny experiment with VGG preprocessing and a 0.875 centre crop, random
weights saved as oi-train's checkpoint layout, three classes. The reference outputs are the in-process
Keras model on the task's own evaluation preprocessing (`classification_input.Parser`), so the
SavedModel must reproduce the pipeline the model was evaluated with, not only itself.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from oi_models import labels
from oi_models.dataloaders import classification_input
from tests.conftest import REPO_ROOT

OVERRIDE = ("task.validation_data.preprocessing=vgg,task.validation_data.center_crop_fraction=0.875,"
            "task.model.num_classes=3")
CLASSES = labels.LabelMap(("/m/01yrx", "/m/0bt9lr", "/m/015p6"), ("Cat", "Dog", "Bird"))
TOLERANCE = 1e-5  # probabilities; the same float32 ops in both processes


def _images(shared, tmp):
  """Real photos (one grayscale), one of them as PNG: sizes and formats mixed in one batch."""
  photos = shared("images", "train_2018_pyaf")
  paths = [photos / "000013ba71c12506.jpg", photos / "0000313e5dccf13b.jpg"]
  png = tmp / "upright.png"
  png.write_bytes(tf.io.encode_png(tf.io.decode_jpeg(paths[1].read_bytes())[::3, ::3]).numpy())
  return [str(p) for p in paths] + [str(png)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  from official.core import exp_factory
  from official.vision.modeling import factory
  import tf_keras
  import oi_models.configs.classification  # pylint: disable=unused-import
  tmp = tmp_path_factory.mktemp("classifier")
  params = exp_factory.get_exp_config("oi_classifier_tiny")
  params.override({"task": {"model": {"num_classes": 3}}})
  tf_keras.utils.set_random_seed(1)
  model = factory.build_classification_model(
      tf_keras.layers.InputSpec(shape=[None, 64, 64, 3]), params.task.model)
  model_dir = tmp / "model"
  tf.train.Checkpoint(model=model).save(str(model_dir / "ckpt"))
  CLASSES.to_csv(model_dir / "classes.csv")
  export_dir = tmp / "saved_model"
  done = subprocess.run(
      [pathlib.Path(sys.executable).parent / "oi-export", "--experiment=oi_classifier_tiny",
       f"--params_override={OVERRIDE}", f"--checkpoint={model_dir}", f"--export_dir={export_dir}",
       "--top_k=2"], capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return model, export_dir, tmp


@pytest.fixture(scope="module")
def classify_started(exported, tmp_path_factory):
  """oi-classify over good and broken files, started in the background (it runs while `served`
  reloads the SavedModel): (process, the files, its output folder)."""
  from tests.serving import image_files
  _, export_dir, _ = exported
  tmp = tmp_path_factory.mktemp("classify")
  files = image_files.write(tmp / "images")
  out = tmp / "out"
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      [pathlib.Path(sys.executable).parent / "oi-classify", f"--saved_model={export_dir}",
       "--batch_size=4", "--min_score=0", f"--output_csv={out}/labels.csv",
       f"--output_jsonl={out}/top.jsonl", f"--draw_dir={out}/drawn", f"--failures_csv={out}/failures.csv",
       str(tmp / "images")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  yield process, files, out
  if process.poll() is None:
    process.kill()
    process.communicate()


@pytest.fixture(scope="module")
def served(exported, classify_started, tmp_path_factory):
  """Outputs of every signature, from a fresh process."""
  from tests.conftest import shared_path
  del classify_started  # started first, so that it overlaps this reload
  _, export_dir, tmp = exported
  paths = _images(shared_path, tmp)
  out = str(tmp / "served.npz")
  done = subprocess.run([sys.executable, "-m", "tests.serving.saved_model_runner", str(export_dir),
                         out, *paths], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(out + ".json", encoding="utf-8") as f:
    return dict(np.load(out)), json.load(f), paths


def _reference_probabilities(model, paths):
  parser = classification_input.Parser(np.arange(3), output_size=(64, 64), preprocessing="vgg",
                                       center_crop_fraction=0.875)
  # The datasets hold JPEG bytes (the parser's own decode and crop); a PNG is given decoded.
  inputs = [tf.constant(open(p, "rb").read()) for p in paths]
  inputs = [x if p.endswith(".jpg") else tf.io.decode_png(x, channels=3) for p, x in zip(paths, inputs)]
  images = [parser._finish(parser._parse_eval_image({"image": x})) for x in inputs]
  return tf.sigmoid(model(tf.stack(images), training=False)).numpy()


def test_every_signature_equals_the_in_process_model(exported, served):
  model, _, _ = exported
  results, _, paths = served
  expected = _reference_probabilities(model, paths)
  assert expected.std(axis=0).max() > 1e-4, "the images should give different outputs"
  for signature in ("serving_default", "image_bytes", "image_tensor", "tf_example"):
    np.testing.assert_allclose(results[f"{signature}/probs"], expected, atol=TOLERANCE,
                               err_msg=signature)


def test_top_k_names_the_classes(served):
  results, _, _ = served
  probs = results["image_bytes/probs"]
  order = np.argsort(-probs, axis=1, kind="stable")[:, :2]
  np.testing.assert_array_equal(results["image_bytes/top_k_classes"], order)
  np.testing.assert_allclose(results["image_bytes/top_k_scores"], np.take_along_axis(probs, order, 1))
  mids = np.asarray(CLASSES.mids)[order]
  names = np.asarray(CLASSES.names)[order]
  np.testing.assert_array_equal(results["image_bytes/top_k_mids"].astype(str), mids)
  np.testing.assert_array_equal(results["image_bytes/top_k_names"].astype(str), names)


def test_signatures_as_tf_serving_sees_them(served, exported):
  _, signatures, _ = served
  _, export_dir, _ = exported
  assert set(signatures) == {"serving_default", "image_bytes", "image_tensor", "tf_example"}
  assert signatures["serving_default"]["inputs"] == {"image_bytes": {"dtype": "string", "shape": [None]}}
  assert signatures["image_tensor"]["inputs"] == {
      "input_tensor": {"dtype": "uint8", "shape": [None, None, None, 3]}}
  assert signatures["tf_example"]["inputs"] == {"tf_example": {"dtype": "string", "shape": [None]}}
  outputs = signatures["image_bytes"]["outputs"]
  assert outputs["probs"] == {"dtype": "float32", "shape": [None, 3]}
  assert outputs["top_k_mids"] == {"dtype": "string", "shape": [None, 2]}
  # TF Serving's row format needs the batch first in every output.
  assert all(o["shape"][0] is None for s in signatures.values() for o in s["outputs"].values())
  # What `saved_model_cli show --all` reads: the MetaGraph's signature defs.
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-direct-tensorflow-import
  meta = saved_model_utils.get_meta_graph_def(str(export_dir), "serve")
  assert meta.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
  assert set(meta.signature_def["serving_default"].outputs) == set(outputs)


def test_assets_hold_the_classes_and_config(exported):
  _, export_dir, _ = exported
  assert labels.LabelMap.from_csv(export_dir / "assets" / "class_list.csv") == CLASSES
  config = (export_dir / "assets" / "params.yaml").read_text()
  assert "preprocessing: vgg" in config and "center_crop_fraction: 0.875" in config


def test_classify_writes_every_format_and_reports_bad_images(classify_started, served):
  import pandas as pd
  from tests.serving import image_files
  results, _, paths = served
  process, files, out = classify_started
  stdout, stderr = process.communicate(timeout=600)
  assert process.returncode == 1, stdout + stderr[-2000:]
  failures = pd.read_csv(out / "failures.csv")
  assert dict(zip(failures.path.map(lambda p: pathlib.Path(p).name), failures.reason)) == files["bad"]
  rows = pd.read_csv(out / "labels.csv")
  assert list(rows.columns) == ["ImageID", "LabelName", "Score"]
  assert sorted(set(rows.ImageID)) == sorted(files["good"])
  assert len(rows) == len(files["good"]) * len(CLASSES)  # --min_score=0: every class
  photo = rows[rows.ImageID == image_files.PHOTO].set_index("LabelName").Score
  i = [pathlib.Path(p).stem for p in paths].index(image_files.PHOTO)
  np.testing.assert_allclose(photo[list(CLASSES.mids)].to_numpy(), results["image_bytes/probs"][i],
                             atol=1e-6)
  plain = rows[rows.ImageID == "plain"].Score.to_numpy()
  # EXIF orientation ignored, as the builder does (the same pixels; other batch companions: 1e-6).
  np.testing.assert_allclose(rows[rows.ImageID == "exif_rotated"].Score.to_numpy(), plain, atol=1e-6)
  lines = [json.loads(line) for line in (out / "top.jsonl").read_text().splitlines()]
  assert all(len(x["top"]) == 2 and x["top"][0]["Score"] >= x["top"][1]["Score"] for x in lines)
  assert {t["DisplayName"] for x in lines for t in x["top"]} <= set(CLASSES.names)
  assert sorted(p.stem for p in (out / "drawn").iterdir()) == sorted(files["good"])
