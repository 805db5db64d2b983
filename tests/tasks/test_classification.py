"""The classifier task in this process: it learns the sample, reports, initializes, compiles, stops.

One tiny model is trained once for the module (`trained`) on a 300-image sample and shared.
"""

import csv
import json
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import task_factory
from official.core import train_utils

from oi_models.configs import classification as cls_cfg
from oi_models import evaluation
from oi_models.tasks import classification
from oi_models.tasks import initialization
from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from oi_models.tasks import strategies
from oi_models.tasks import trainer
from oi_models.datasets import make_sample
from oi_models.io import readers
from tests.tasks import sample_data
from tests.tasks import test_train

TINY = "oi_classifier_tiny"


def tiny_params(data_dir, **override):
  return sample_data.experiment_params(TINY, data_dir, **override)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  root = tmp_path_factory.mktemp("classifier_sample")
  return root, sample_data.build(root, num_images=300)


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
  """The tiny experiment trained and evaluated on the sample: (params, model_dir)."""
  _, data_dir = sample
  model_dir = str(tmp_path_factory.mktemp("tiny_run"))
  params = tiny_params(data_dir)
  trainer.run_experiment(params, model_dir, "train_and_eval")
  return params, model_dir


def test_tiny_classifier_learns_the_sample_and_file_evaluation_agrees(sample, trained):
  root, _ = sample
  params, model_dir = trained
  metrics = json.loads((tf.io.gfile.GFile(f"{model_dir}/metrics.json").read()))
  assert metrics["mode"]["global_step"] == params.trainer.train_steps
  assert metrics["mean_ap"] >= 0.8, metrics["per_class"]

  # Independently: predictions of the final checkpoint on the validation images, scored from the
  # official CSV files by the file evaluator (labels read and expanded there, not by the pipeline).
  task = task_factory.get_task(params.task, logging_dir=model_dir)
  model = task.build_model()
  tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(model_dir)).expect_partial()
  rows = []
  for images, labels in task.build_inputs(params.task.validation_data):
    scores = tf.sigmoid(model(images, training=False)).numpy()
    ids = readers.key_to_image_id(labels["source_id"].numpy().view(np.uint64))
    rows += [(i, mid, f"{s:.9g}") for i, row in zip(ids, scores)
             for mid, s in zip(task.label_map.mids, row)]
  predictions = root / "predictions.csv"
  with open(predictions, "w", newline="") as f:
    csv.writer(f).writerows([("ImageID", "LabelName", "Score"), *rows])
  sample_dir = root / "sample"
  from_files = evaluation.evaluate_classification_files(
      sample_dir / make_sample.LABEL_FILES["validation"], predictions,
      sample_dir / make_sample.CLASS_DESCRIPTIONS, hierarchy=sample_dir / make_sample.HIERARCHY)
  per_class = {row["MID"]: row["AP"] for row in from_files.table if row["AP"] is not None}
  assert set(per_class) == {row["MID"] for row in metrics["per_class"] if row["AP"] is not None}
  for row in metrics["per_class"]:
    if row["AP"] is not None:
      assert row["AP"] == pytest.approx(per_class[row["MID"]], abs=1e-5), row["MID"]


def test_per_class_table_and_class_list_carry_display_names(trained):
  _, model_dir = trained
  with open(f"{model_dir}/per_class.csv", newline="") as f:
    table = list(csv.DictReader(f))
  with open(f"{model_dir}/{classification.CLASSES_FILE}", newline="") as f:
    classes = list(csv.reader(f))
  assert [r["MID"] for r in table] == [mid for mid, _ in classes]
  names = {r["MID"]: r["DisplayName"] for r in table}
  assert names["/m/0smp22"] == "Snow, ice and frost" and names["/m/0smp03"] == "Triangle"
  assert all(int(r["Positives"]) > 0 for r in table)


def _scalars(directory):
  found = {}
  for path in tf.io.gfile.glob(f"{directory}/events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        number = (tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value)
        found.setdefault(value.tag, []).append((event.step, float(number)))
  return found


def test_tensorboard_has_losses_rates_learning_rate_and_map(trained):
  params, model_dir = trained
  train = _scalars(f"{model_dir}/train")
  for tag in ("training_loss", "learning_rate", "steps_per_second", "images_per_second"):
    assert tag in train, sorted(train)
    assert all(math.isfinite(v) for _, v in train[tag])
  steps = [s for s, _ in train["training_loss"]]
  assert steps == list(range(params.trainer.summary_interval, params.trainer.train_steps + 1,
                             params.trainer.summary_interval))
  losses = [v for _, v in train["training_loss"]]
  assert losses[-1] < 0.7 * losses[0]
  assert train["learning_rate"][-1][1] < train["learning_rate"][0][1]  # Cosine decay.
  assert all(v > 0 for _, v in train["images_per_second"])
  validation = _scalars(f"{model_dir}/validation")
  assert validation[classification.MAP_KEY][-1][1] >= 0.8
  assert "validation_loss" in validation


def _basic_resnet_trainable_params(width, blocks, num_classes):
  """Trainable values of a ResNet with basic blocks, counted by hand: convolutions without bias,
  batch norms with gamma and beta, a projection shortcut opening each stage, dense head."""
  def conv_bn(k, cin, cout):
    return k * k * cin * cout + 2 * cout
  total = conv_bn(7, 3, width)
  cin = width
  for stage, repeats in enumerate(blocks):
    cout = width * 2 ** stage
    for block in range(repeats):
      total += conv_bn(3, cin, cout) + conv_bn(3, cout, cout)
      if block == 0:
        total += conv_bn(1, cin, cout)
      cin = cout
  return total + cin * num_classes + num_classes


def _trainable_count(model):
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_models_have_the_trainable_weights_they_should(sample):
  _, data_dir = sample
  task = task_factory.get_task(tiny_params(data_dir).task)
  model = task.build_model()
  num_classes = len(task.label_map)
  assert num_classes == 12
  expected = _basic_resnet_trainable_params(16, (1, 1, 1, 1), num_classes)
  assert _trainable_count(model) == expected > 0
  assert all(isinstance(layer, tf_keras.layers.Layer) for layer in model.submodules
             if hasattr(layer, "trainable_weights"))

  # Model Garden's ResNet-50 over 5000 classes: torchvision's resnet50 has 25,557,032 parameters with
  # its 1000-class head (2048 x 1000 + 1000), so the backbone has 23,508,032.
  config = cls_cfg.ClassifierModel(num_classes=5000)
  config.backbone.resnet.model_id = 50
  model = image_model(config)
  assert _trainable_count(model) == 23_508_032 + 2048 * 5000 + 5000


def image_model(config):
  from official.vision.modeling import factory  # pylint: disable=import-outside-toplevel
  return factory.build_classification_model(
      tf_keras.layers.InputSpec(shape=[None, *config.input_size]), config)


def _batch_and_task(data_dir, **override):
  params = tiny_params(data_dir, **override)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  optimizer = train_utils.create_optimizer(task, params)
  dataset = task.build_inputs(params.task.train_data)
  return params, task, model, optimizer, dataset


def test_train_step_has_static_shapes_and_compiles_with_xla_on_cpu(sample):
  _, data_dir = sample
  _, task, model, optimizer, dataset = _batch_and_task(
      data_dir, task={"model": {"input_size": [32, 32, 3]}})
  assert all(s.shape.is_fully_defined() for s in tf.nest.flatten(dataset.element_spec))
  inputs = next(iter(dataset))
  features, labels = inputs
  expected = task.build_losses(labels, model(features, training=True), model.losses)

  # jit_compile=True compiles the whole step (forward, loss, gradients, optimizer) or raises.
  step = tf.function(lambda x: task.train_step(x, model, optimizer), jit_compile=True)
  before = [w.numpy() for w in model.trainable_weights]
  logs = step(inputs)
  assert float(logs[task.loss]) == pytest.approx(float(expected), rel=1e-4)
  step(inputs)  # The warmup's first learning rate is 0: the second step moves the weights.
  assert int(optimizer.iterations.numpy()) == 2
  assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_bfloat16_run_computes_in_bfloat16_and_trains(sample, tmp_path):
  _, data_dir = sample
  params = tiny_params(data_dir, runtime={"mixed_precision_dtype": "bfloat16"},
                       task={"model": {"input_size": [32, 32, 3]}},
                       trainer={"train_steps": 4, "steps_per_loop": 2, "summary_interval": 2,
                                "checkpoint_interval": 4})
  try:
    model, _ = trainer.run_experiment(params, str(tmp_path), "train")
    convs = [l for l in model.submodules if isinstance(l, tf_keras.layers.Conv2D)]
    assert convs and all(l.compute_dtype == "bfloat16" for l in convs)
    assert all(w.dtype == tf.float32 for w in model.trainable_weights)
    losses = _scalars(f"{tmp_path}/train")["training_loss"]
    assert [s for s, _ in losses] == [2, 4] and all(math.isfinite(v) for _, v in losses)
  finally:
    strategies.set_precision(params.replace(runtime={"mixed_precision_dtype": None}).runtime)
  assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(trained, tmp_path):
  params, model_dir = trained
  test_train.assert_non_finite_loss_stops(params, model_dir, tmp_path / "run", loop=5)


def _model_outputs(model, images):
  return model(images, training=False).numpy()


def test_init_from_keras_h5_tf2_checkpoint_and_backbone_only(sample, trained, tmp_path):
  _, data_dir = sample
  params, model_dir = trained
  task = task_factory.get_task(params.task, logging_dir=model_dir)
  source = task.build_model()
  tf.train.Checkpoint(model=source).read(tf.train.latest_checkpoint(model_dir)).expect_partial()
  images = next(iter(task.build_inputs(params.task.validation_data)))[0]
  reference = _model_outputs(source, images)
  h5 = str(tmp_path / "weights.h5")
  source.save_weights(h5)
  exported = tf.train.Checkpoint(model=source).write(str(tmp_path / "converted" / "ckpt"))

  classes = f"{model_dir}/{classification.CLASSES_FILE}"
  for path, modules in ((h5, "all"), (model_dir, "all"), (exported, "all")):
    override = {"task": {"init_checkpoint": path, "init_checkpoint_modules": modules,
                         "class_list": classes}}
    target_task = task_factory.get_task(params.replace(**override).task)
    target = target_task.build_model()
    assert not np.allclose(_model_outputs(target, images), reference)
    target_task.initialize(target)
    np.testing.assert_allclose(_model_outputs(target, images), reference, rtol=1e-5, atol=1e-5)

  # Backbone only: a head of another size starts fresh, the backbone's features are the source's.
  other = params.replace(task={"init_checkpoint": exported, "init_checkpoint_modules": "backbone",
                               "class_list": str(tmp_path / "three.txt")})
  (tmp_path / "three.txt").write_text("/m/0smp01\n/m/0smp02\n/m/0smp21\n")
  target_task = task_factory.get_task(other.task)
  assert [target_task.label_map.name(m) for m in target_task.label_map.mids] == [
      "Circle", "Square", "Night"]
  target = target_task.build_model()
  target_task.initialize(target)
  for a, b in zip(source.backbone.weights, target.backbone.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # A backbone-only checkpoint loads as a backbone, and refuses to load as a whole model.
  backbone_only = tf.train.Checkpoint(backbone=source.backbone).write(str(tmp_path / "bb" / "ckpt"))
  target = task.build_model()
  initialization.initialize(target, backbone_only, "backbone")
  np.testing.assert_array_equal(target.backbone.weights[0].numpy(), source.backbone.weights[0].numpy())
  with pytest.raises(ValueError, match="init_checkpoint_modules='backbone'"):
    initialization.initialize(task.build_model(), backbone_only, "all")


def test_class_aware_order_balances_positive_classes(sample):
  _, data_dir = sample
  params = tiny_params(data_dir, task={"train_data": {"order": "class_aware",
                                                      "global_batch_size": 64}})
  task = task_factory.get_task(params.task)
  positives = np.zeros(len(task.label_map))
  uniform = np.zeros(len(task.label_map))
  for (_, labels), (_, plain) in zip(task.build_inputs(params.task.train_data).take(6),
                                     task.build_inputs(tiny_params(data_dir).task.train_data.replace(
                                         global_batch_size=64)).take(6)):
    positives += (labels["labels"].numpy() * labels["label_weights"].numpy()).sum(0)
    uniform += (plain["labels"].numpy() * plain["label_weights"].numpy()).sum(0)
  # The rarest class is drawn far more often than in plain shuffled order.
  rare = int(np.argmin(uniform))
  assert positives[rare] > 1.5 * uniform[rare]


def test_trainable_classes_by_verified_positives_and_class_lists(tmp_path):
  keep = classification.trainable_classes(np.array([30, 29, 100, 30]), np.array([5, 9, 4, 6]), 30, 5)
  assert keep.tolist() == [0, 3]
  (tmp_path / "mids.txt").write_text("/m/b\n/m/zz\n")
  label_map = classification.read_class_list(str(tmp_path / "mids.txt"),
                                             lambda: {"/m/a": "A", "/m/b": "B"})
  assert label_map.mids == ("/m/b", "/m/zz") and label_map.names == ("B", "/m/zz")
  (tmp_path / "desc.csv").write_text('/m/b,"Bee, honey"\n/m/a,A\n')
  label_map = classification.read_class_list(str(tmp_path / "desc.csv"))
  assert label_map.names == ("Bee, honey", "A")
