"""The Open Images classifier as a Model Garden task: three-state labels, masked loss, mAP.

A subclass of Model Garden's `ImageClassificationTask`: its model builder (backbone from the config's
one-of + logits head), initialization from checkpoints and train step are used as they are; what
changes is

- the input: this package's TFDS dataset `open_images` through `dataloaders.classification_input`,
  labels as `{"labels", "label_weights"}` (unknown pairs weigh 0), in shuffled or class-aware order,
  each input pipeline reading its own share;
- the classes: a release's class list, or the image-level classes with enough verified positives in
  the train and validation splits; the list is kept in `<model_dir>/classes.csv`;
- the loss: sigmoid cross-entropy over verified labels, normalised by the known labels of the global
  batch (`modeling.classification_losses`);
- the metric: the Open Images classification mAP over verified labels
  (`evaluation.ClassificationEvaluator`), with a per-class table (MID, display name, AP, counts)
  written next to metrics.json by the trainer (`write_evaluation`).

Model Garden's train step divides the task loss by the number of replicas (its loss is a per-replica
mean); `build_losses` returns the replica's share of the global loss times that number, so the
division gives exactly the share and the replicas' gradients add up to the gradient of the global loss.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from official.core import task_factory
from official.vision.tasks import image_classification

from oi_models import labels as labels_lib
from oi_models.configs import classification as cls_cfg
from oi_models.dataloaders import classification_input
from oi_models.dataloaders import examples
from oi_models.evaluation import ClassificationEvaluator
from oi_models.evaluation import report
from oi_models.evaluation.classification import METRIC_PREFIX
from oi_models.modeling import classification_losses
from oi_models.tasks import initialization

CLASSES_FILE = "classes.csv"
MAP_KEY = f"{METRIC_PREFIX}_mAP"


def _tfds_builder(config: cls_cfg.DataConfig) -> tfds.core.DatasetBuilder:
  import oi_models.datasets  # pylint: disable=g-import-not-at-top,unused-import  (registers open_images)
  return tfds.builder(config.tfds_name,
                      data_dir=os.path.expanduser(config.tfds_data_dir) if config.tfds_data_dir else None)


_VALID = "valid"


def gather_replicas(tensors: dict) -> dict:
  """Each [b, C] float tensor of the replicas, stacked into every replica's copy, plus a `valid` row mask.

  The replicas' rows are placed in disjoint slots of a zero buffer of `num_replicas x max b` rows and
  summed with an all-reduce (the collective every strategy has, across workers too); `valid` marks
  the rows that hold an example (the last batch of an evaluation may be short or empty on some
  replicas). With one replica the tensors come back as they are, all rows valid.
  """
  first = next(iter(tensors.values()))
  rows = tf.shape(first)[0]
  tensors = dict(tensors, **{_VALID: tf.ones([rows], tf.float32)})
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tensors
  replica, replicas = context.replica_id_in_sync_group, context.num_replicas_in_sync
  rows_of = context.all_reduce(tf.distribute.ReduceOp.SUM,
                               tf.one_hot(replica, replicas) * tf.cast(rows, tf.float32))
  slot = tf.cast(tf.reduce_max(rows_of), tf.int32)
  start = replica * slot
  total = replicas * slot

  def place(x):
    x = tf.cast(x, tf.float32)
    padding = [[start, total - start - rows]] + [[0, 0]] * (len(x.shape) - 1)
    return tf.pad(x, padding)

  return context.all_reduce(tf.distribute.ReduceOp.SUM, {k: place(v) for k, v in tensors.items()})


class NoTrainableClassesError(ValueError):
  """No class of the data has enough verified positives for the thresholds."""


def read_class_list(path: str, display_names=None) -> labels_lib.LabelMap:
  """The task's `class_list` file (`LabelMap.from_class_list`); a bare MID list takes its names from
  `display_names()` (e.g. the dataset's), or the MID where it has none."""
  return labels_lib.LabelMap.from_class_list(path, display_names)


def trainable_classes(train_positives: np.ndarray, validation_positives: np.ndarray,
                      min_train: int, min_validation: int) -> np.ndarray:
  """Indices of the classes with at least `min_train` / `min_validation` verified positives."""
  return np.flatnonzero((train_positives >= min_train) & (validation_positives >= min_validation))


@task_factory.register_task_cls(cls_cfg.ClassifierTask)
class ClassifierTask(image_classification.ImageClassificationTask):
  """Open Images multi-label classifier (see the module docstring)."""

  def __init__(self, params: cls_cfg.ClassifierTask, logging_dir: Optional[str] = None,
               name: Optional[str] = None):
    self._builders = {}
    self._statistics = {}
    self.label_map = self._resolve_classes(params, logging_dir)
    num_classes = len(self.label_map)
    if params.model.num_classes not in (0, num_classes):
      raise ValueError(f"model.num_classes is {params.model.num_classes} but the class list has "
                       f"{num_classes} classes")
    super().__init__(params.replace(model={"num_classes": num_classes}), logging_dir, name)
    self._evaluator = ClassificationEvaluator(num_classes, class_keys=self.label_map.mids)
    self._last_result = None

  # Data and classes.

  def _builder(self, config: cls_cfg.DataConfig) -> tfds.core.DatasetBuilder:
    key = (config.tfds_name, config.tfds_data_dir)
    if key not in self._builders:
      self._builders[key] = _tfds_builder(config)
    return self._builders[key]

  def _label_statistics(self, config: cls_cfg.DataConfig, split: str):
    key = (config.tfds_name, config.tfds_data_dir, split)
    if key not in self._statistics:
      self._statistics[key] = classification_input.label_statistics(self._builder(config), split)
    return self._statistics[key]

  def _resolve_classes(self, params: cls_cfg.ClassifierTask,
                       logging_dir: Optional[str]) -> labels_lib.LabelMap:
    saved = os.path.join(logging_dir, CLASSES_FILE) if logging_dir else None
    if saved and tf.io.gfile.exists(saved):
      logging.info("classes: %s (kept from an earlier run in this model dir)", saved)
      return labels_lib.LabelMap.from_csv(saved)

    def dataset_classes():
      builder = self._builder(params.train_data)
      return (builder.info.features["image_labels"]["label"].names,
              builder.info.metadata["image_level_class_names"])

    if params.class_list:
      label_map = read_class_list(params.class_list, lambda: dict(zip(*dataset_classes())))
      logging.info("classes: %d from %s", len(label_map), params.class_list)
    else:
      mids, names = dataset_classes()
      train, _, _ = self._label_statistics(params.train_data, params.train_data.tfds_split)
      validation, _, _ = self._label_statistics(params.validation_data,
                                                params.validation_data.tfds_split)
      keep = trainable_classes(train, validation, params.min_train_positives,
                               params.min_validation_positives)
      if not keep.size:
        raise NoTrainableClassesError(f"no class of {params.train_data.tfds_name} has {params.min_train_positives} "
                         f"verified positives in train and {params.min_validation_positives} in "
                         "validation: lower min_train_positives / min_validation_positives")
      label_map = labels_lib.LabelMap(tuple(mids[i] for i in keep), tuple(names[i] for i in keep))
      logging.info("classes: %d of %d with >= %d verified positives in train and >= %d in "
                   "validation", len(keep), len(mids), params.min_train_positives,
                   params.min_validation_positives)
    if saved:
      tf.io.gfile.makedirs(logging_dir)
      label_map.to_csv(saved)
    return label_map

  def build_inputs(self, params: cls_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """This input pipeline's share of a split, parsed and batched to the per-replica batch size."""
    builder = self._builder(params)
    num_workers = input_context.num_input_pipelines if input_context else 1
    worker = input_context.input_pipeline_id if input_context else 0
    batch_size = (input_context.get_per_replica_batch_size(params.global_batch_size)
                  if input_context else params.global_batch_size)
    image_classes = None
    if params.order == "class_aware":
      _, _, image_classes = self._label_statistics(params, params.tfds_split)
    stream = examples.load(builder, params.tfds_split, order=params.order, seed=params.seed,
                           num_workers=num_workers, worker_index=worker,
                           image_classes_of_split=image_classes, deterministic=params.deterministic)
    hierarchy = (labels_lib.Hierarchy(json.loads(builder.info.metadata["hierarchy"]))
                 if params.expand_hierarchy else None)
    parser = classification_input.Parser.from_features(
        builder.info.features, self.label_map.mids, hierarchy=hierarchy,
        output_size=self.task_config.model.input_size[:2],
        use_machine_labels=params.machine_labels != "off",
        machine_label_threshold=params.machine_label_threshold,
        soft_machine_labels=params.machine_labels == "soft", preprocessing=params.preprocessing,
        aug_rand_hflip=params.aug_rand_hflip, crop_area_range=tuple(params.crop_area_range),
        center_crop_fraction=params.center_crop_fraction, dtype=params.dtype)
    return classification_input.dataset(stream, parser, is_training=params.is_training,
                                        batch_size=batch_size, drop_remainder=params.drop_remainder,
                                        deterministic=params.deterministic)

  def initialize(self, model):
    """Loads `init_checkpoint` (Keras .h5, TF2 or converted checkpoint; all or backbone only)."""
    if self.task_config.init_checkpoint:
      initialization.initialize(model, self.task_config.init_checkpoint,
                                self.task_config.init_checkpoint_modules)

  # Loss, steps, metrics.

  def build_losses(self, labels: dict, model_outputs: tf.Tensor,
                   aux_losses: Optional[Any] = None) -> tf.Tensor:
    """The replica's share of the global verified-label loss, times the number of replicas."""
    config = self.task_config.losses
    share = classification_losses.verified_label_loss(
        model_outputs, labels["labels"], labels["label_weights"],
        unknown_as_negative=config.unknown_labels == "negative",
        unknown_weight=config.unknown_weight, label_smoothing=config.label_smoothing)
    total = share * tf.distribute.get_strategy().num_replicas_in_sync
    if aux_losses:
      total += tf.add_n(aux_losses)
    return config.loss_weight * total

  def build_metrics(self, training: bool = True):
    """No Keras metrics: the mAP is computed on the host by `aggregate_logs` at evaluation."""
    del training
    return []

  def validation_step(self, inputs, model, metrics=None):
    """Loss, plus the labels and scores of the global batch for the evaluator."""
    del metrics
    features, labels = inputs
    outputs = tf.cast(self.inference_step(features, model), tf.float32)
    loss = self.build_losses(labels, outputs, aux_losses=model.losses)
    outputs = {"labels": labels["labels"], "label_weights": labels["label_weights"],
               "scores": tf.sigmoid(outputs)}
    outputs = gather_replicas(outputs)
    scores = outputs.pop("scores")
    return {self.loss: loss, "groundtruths": outputs, "predictions": scores}

  def aggregate_logs(self, state=None, step_outputs=None):
    """Adds a step's global batch (the first local replica's gathered copy) to the evaluator."""
    if state is None:
      self._evaluator.reset_states()
      state = self._evaluator
    gathered = {k: np.asarray(v[0]) for k, v in step_outputs["groundtruths"].items()}
    valid = gathered.pop(_VALID) > 0
    state.update_state({k: v[valid] for k, v in gathered.items()},
                       np.asarray(step_outputs["predictions"][0])[valid])
    return state

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
    """mAP and counts for the logs and TensorBoard; the per-class results go to `write_evaluation`."""
    result = aggregated_logs.evaluate()
    aggregated_logs.reset_states()
    self._last_result = result
    return {MAP_KEY: float(np.nan_to_num(result.mean_ap)),
            "num_classes_evaluated": int((result.num_positives > 0).sum()),
            "num_images_evaluated": result.num_images}

  def write_evaluation(self, output_dir: str, step: int) -> dict:
    """Writes metrics.json and per_class.csv (MID, display name, AP, counts) of the last evaluation."""
    result = self._last_result
    if result is None:
      return {}
    mode = {"task": "classification", "unknown_as_negative": False,
            "expand_ground_truth": self.task_config.validation_data.expand_hierarchy,
            "num_classes": len(self.label_map),
            "num_classes_evaluated": int((result.num_positives > 0).sum()),
            "num_images": result.num_images, "global_step": int(step),
            "split": self.task_config.validation_data.tfds_split}
    summary = report.summary_dict(result.metrics(self.label_map.mids), result.mean_ap,
                                  report.classification_table(result, self.label_map), mode)
    return report.write(output_dir, summary, report.CLASSIFICATION_COLUMNS)
