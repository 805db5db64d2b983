"""Fine-tuning a detector checkpoint onto some of its classes, and the checks on its class list.

The checkpoint is the tiny detector's (quarter-width Inception-ResNet-v2 Faster R-CNN, the sample's
ten classes), saved as oi-convert-checkpoint saves a conversion (`tf.train.Checkpoint(model=...,
backbone=..., rpn_head=..., detection_head=...)` with `class_list.csv` beside it); the subset is three
of its classes in another order. After initialisation (0 steps) the subset model must give, on the
same image, the full model's proposals and exactly the kept columns of its class logits (background
and the kept classes) and box encodings: a head started from scratch, rows taken in the wrong order
or off by the background's one would all differ.
"""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from official.core import task_factory

from oi_models import labels
from oi_models.configs import detection as det_cfg
from oi_models.dataloaders import examples
from oi_models.modeling.faster_rcnn import model as model_lib
from oi_models.tasks import detection_classes
from oi_models.tasks import initialization
from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from tests.tasks import sample_data

TINY = "oi_detector_irv2_tiny"
SUBSET = (7, 2, 5)  # indices into the sample's boxable classes, in the fine-tune's output order


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  """(data_dir, the dataset's boxable classes)."""
  data_dir = sample_data.build(tmp_path_factory.mktemp("finetune_sample"), num_images=12)
  builder = tfds.builder("open_images/v6_original", data_dir=data_dir)
  return data_dir, detection_classes.dataset_classes(builder)


def _params(data_dir, **task):
  return sample_data.experiment_params(TINY, data_dir, task=task)


@pytest.fixture(scope="module")
def converted(sample, tmp_path_factory):
  """(checkpoint prefix, the full model): the tiny detector in the converter's layout."""
  data_dir, classes = sample
  params = _params(data_dir)
  full = model_lib.build_faster_rcnn(params.task.model.replace(num_classes=len(classes) + 1))
  folder = tmp_path_factory.mktemp("converted")
  prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=full, **full.checkpoint_items),
                                      str(folder), max_to_keep=1, checkpoint_name="ckpt").save(1)
  classes.to_csv(folder / "class_list.csv")
  return prefix, full


@pytest.fixture(scope="module")
def subset(sample, converted, tmp_path_factory):
  """(task, model) of the fine-tune experiment over SUBSET, initialised from the checkpoint."""
  data_dir, classes = sample
  path = tmp_path_factory.mktemp("subset") / "classes.txt"
  path.write_text("".join(classes.mids[i] + "\n" for i in SUBSET))  # MIDs only: named from the data
  task = task_factory.get_task(_params(data_dir, class_list=str(path),
                                       init_checkpoint=converted[0]).task)
  model = task.build_model()
  task.initialize(model)
  return task, model


def test_subset_model_starts_from_the_checkpoints_rows_of_its_classes(sample, converted, subset):
  _, classes = sample
  full = converted[1]
  task, model = subset
  assert task.label_map.mids == tuple(classes.mids[i] for i in SUBSET)
  assert task.label_map.names == tuple(classes.names[i] for i in SUBSET)
  assert task.task_config.model.num_classes == len(SUBSET) + 1
  image = tf.random.stateless_uniform([1, 128, 160, 3], (1, 2), -1.0, 1.0)
  shape = tf.constant([[128.0, 160.0]])
  ours, theirs = model.first_stage(image, shape), full.first_stage(image, shape)
  for key in ("features", "rpn_scores", "rpn_boxes", "rois"):
    np.testing.assert_array_equal(tf.nest.flatten(ours[key])[0], tf.nest.flatten(theirs[key])[0])
  ours = model.second_stage(ours["features"], ours["rois"], shape, [128, 160])
  theirs = full.second_stage(theirs["features"], theirs["rois"], shape, [128, 160])
  kept = np.concatenate([[0], np.array(SUBSET) + 1])  # background, then the kept classes
  full_logits = theirs["class_outputs"].numpy()
  # The same dot products over fewer columns: equal up to float32 rounding of the matmul.
  np.testing.assert_allclose(ours["class_outputs"], full_logits[..., kept],
                             rtol=0, atol=1e-6 * np.abs(full_logits).max())
  box_columns = (4 * kept[:, None] + np.arange(4)).ravel()  # Model Garden's layout, background first
  np.testing.assert_array_equal(ours["box_outputs"], theirs["box_outputs"].numpy()[..., box_columns])
  assert np.abs(ours["box_outputs"].numpy()[..., 4:]).max() > 0  # real encodings, not padding


def test_every_other_variable_is_the_checkpoints(converted, subset):
  full = converted[1]
  _, model = subset
  head, full_head = model.detection_head[0], full.detection_head[0]
  predictors = {id(v) for layer in (head.class_predictor, head.box_predictor) for v in layer.weights}
  ours = [v for v in model.weights if id(v) not in predictors]
  full_predictors = {id(v) for layer in (full_head.class_predictor, full_head.box_predictor)
                     for v in layer.weights}
  theirs = [v for v in full.weights if id(v) not in full_predictors]
  assert len(ours) == len(theirs) > 100
  for a, b in zip(ours, theirs):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_subset_class_missing_from_the_checkpoint_is_named(sample, converted, tmp_path):
  data_dir, classes = sample
  prefix, _ = converted
  # The same checkpoint, whose class list lacks the subset's second class.
  folder = tmp_path / "converted"
  shutil.copytree(pathlib.Path(prefix).parent, folder)
  other = labels.LabelMap(tuple("/m/0zzzzzz" if i == SUBSET[1] else m
                                for i, m in enumerate(classes.mids)), classes.names)
  other.to_csv(folder / "class_list.csv")
  subset_file = tmp_path / "classes.txt"
  subset_file.write_text("".join(classes.mids[i] + "\n" for i in SUBSET))
  params = _params(data_dir, class_list=str(subset_file),
                   init_checkpoint=str(folder / pathlib.Path(prefix).name))
  with pytest.raises(initialization.ClassListError) as error:
    task_factory.get_task(params.task)
  message = str(error.value)
  assert f"{classes.mids[SUBSET[1]]} ({classes.names[SUBSET[1]]})" in message
  assert "1 of the model's 3 classes" in message and str(folder / "class_list.csv") in message
  assert classes.mids[SUBSET[0]] not in message


def test_dataset_classes_in_another_order_than_the_checkpoints_are_mapped(sample):
  """The experiment's list (the dataset's) against a conversion listing the same classes reversed:
  each model class takes its own row, not the row at its index (which named detections wrongly)."""
  _, classes = sample
  reversed_list = labels.LabelMap(classes.mids[::-1], classes.names[::-1])
  rows = initialization.class_rows(classes, reversed_list, "class_list.csv")
  np.testing.assert_array_equal(rows, np.arange(len(classes))[::-1])
  assert initialization.class_rows(classes, classes, "class_list.csv") is None


def test_class_list_outside_the_dataset_is_named(sample, tmp_path):
  data_dir, classes = sample
  path = tmp_path / "classes.txt"
  path.write_text(f"{classes.mids[0]}\n/m/0zzzzzz\n")
  with pytest.raises(ValueError, match=r"1 of its 2 classes are not boxable classes of "
                     r"open_images/v6_original: /m/0zzzzzz"):
    task_factory.get_task(_params(data_dir, class_list=str(path)).task)


def test_a_classifier_checkpoint_is_a_clear_error(sample, subset, tmp_path):
  from official.vision.modeling import factory  # pylint: disable=import-outside-toplevel
  from official.core import exp_factory  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  data_dir, classes = sample
  config = exp_factory.get_exp_config("oi_classifier_tiny").task.model.replace(
      num_classes=len(classes))
  classifier = factory.build_classification_model(
      tf_keras.layers.InputSpec(shape=[None, 64, 64, 3]), config)
  prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=classifier, backbone=classifier.backbone),
                                      str(tmp_path), max_to_keep=1, checkpoint_name="ckpt").save(1)
  classes.to_csv(tmp_path / "class_list.csv")
  task, model = subset
  holds = (r"the checkpoint's model holds: layer-0, .*; this model: backbone, detection_generator, "
           r"detection_head, roi_aligner, roi_generator, roi_sampler, rpn_head\)")
  with pytest.raises(ValueError, match=r"ckpt-1 is not a checkpoint of this FasterRCNNModel: it has "
                     r"no model/detection_head/0/class_predictor/kernel \(" + holds):
    initialization.initialize(model, prefix, "all", rows=[0, 1, 2])
  # The same classes: a whole-model load, which fails as clearly.
  assert detection_classes.checkpoint_rows(prefix, "all", classes) is None
  with pytest.raises(ValueError, match=r"ckpt-1 is not a checkpoint of this FasterRCNNModel: .*\("
                     + holds):
    initialization.initialize(model, prefix, "all")
  # As oi-train meets it: the fine-tune experiment with the classifier as its init_checkpoint.
  params = _params(data_dir, class_list=task.task_config.class_list, init_checkpoint=prefix)
  with pytest.raises(ValueError, match=r"is not a checkpoint of this FasterRCNNModel: it has no"):
    task_factory.get_task(params.task).initialize(model)


def test_decoder_keeps_the_boxes_and_labels_of_the_models_classes(sample):
  data_dir, classes = sample
  builder = tfds.builder("open_images/v6_original", data_dir=data_dir)
  kept = labels.LabelMap(tuple(classes.mids[i] for i in SUBSET), tuple(classes.names[i] for i in SUBSET))
  decoder = detection_classes.Decoder(builder.info.features, kept)
  image_names = builder.info.features["image_labels"]["label"].names
  seen = 0
  for raw in examples.load(builder, "train"):
    decoded = decoder.decode(raw)
    example = tf.nest.map_structure(lambda t: t.numpy(), raw)
    objects = example["objects"]
    mids = [classes.mids[i] for i in objects["label"]]
    keep = [m in kept.mids for m in mids]
    expected = [kept.mids.index(m) + 1 for m, k in zip(mids, keep) if k]
    np.testing.assert_array_equal(decoded["groundtruth_classes"], expected)
    np.testing.assert_array_equal(decoded["groundtruth_boxes"], objects["bbox"][keep])
    image_mids = [image_names[i] for i in example["image_labels"]["label"]]
    positive = example["image_labels"]["confidence"] >= 0.5
    for name, want in (("positive", positive), ("negative", ~positive)):
      expected = [kept.mids.index(m) + 1 for m, p in zip(image_mids, want) if p and m in kept.mids]
      np.testing.assert_array_equal(decoded[f"groundtruth_image_labels_{name}"], expected)
    seen += sum(keep)
  assert seen > 0


def test_num_classes_comes_from_the_class_list():
  assert det_cfg.model_num_classes(0, 10, "the class list") == 11
  assert det_cfg.model_num_classes(11, 10, "the class list") == 11
  with pytest.raises(ValueError, match=r"model.num_classes is 5 but the class list has 10 classes "
                     r"\(\+1 background = 11\)"):
    det_cfg.model_num_classes(5, 10, "the class list")



def test_export_takes_num_classes_from_the_checkpoints_class_list(sample, converted, tmp_path):
  """oi-export of a detector experiment (num_classes 0, as the experiments leave it) with no
  --class_list: the classes and their number come from class_list.csv beside the checkpoint."""
  import yaml  # pylint: disable=import-outside-toplevel
  from oi_models.serving import export_saved_model  # pylint: disable=import-outside-toplevel
  data_dir, classes = sample
  prefix, _ = converted
  params = _params(data_dir)
  assert params.task.model.num_classes == 0
  with pytest.raises(ValueError, match=r"model.num_classes is 5 but the class list has 10 classes"):
    export_saved_model.export(str(tmp_path / "wrong"), params.replace(task={"model": {
        "num_classes": 5}}), "detector", checkpoint=prefix)
  export_dir = tmp_path / "exported"
  export_saved_model.export(str(export_dir), params, "detector", checkpoint=prefix)
  assets = export_dir / "assets"
  assert labels.LabelMap.from_csv(assets / "class_list.csv") == classes
  assert yaml.safe_load((assets / "params.yaml").read_text())["task"]["model"]["num_classes"] == 11


def test_model_dir_keeps_the_classes_and_refuses_others(sample, tmp_path):
  data_dir, classes = sample
  model_dir = tmp_path / "run"
  task_factory.get_task(_params(data_dir).task, logging_dir=str(model_dir))
  assert labels.LabelMap.from_csv(model_dir / "classes.csv") == classes
  assert initialization.class_list_beside(str(model_dir / "ckpt-5")) == str(model_dir / "classes.csv")
  few = tmp_path / "few.txt"
  few.write_text(classes.mids[3] + "\n")
  with pytest.raises(initialization.ClassListError, match=r"classes.csv: the model in this model dir "
                     r"has other classes \(10\) than the experiment \(1\)"):
    task_factory.get_task(_params(data_dir, class_list=str(few)).task, logging_dir=str(model_dir))
