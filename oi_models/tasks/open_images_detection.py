"""What every Open Images detection task shares, whatever its model: classes, input stream, metric.

`OpenImagesDetection` is a mixin placed before a Model Garden detection task in the bases
(`class DetectorTask(OpenImagesDetection, maskrcnn.MaskRCNNTask)`). It gives the task

- the classes: the dataset's boxable classes, or the config's `class_list` of some of them
  (`detection_classes`; model class = class list index + 1, 0 = background), kept in the model
  dir's `classes.csv`; `model.num_classes` 0 in the config takes them, another value must equal them;
- the input stream: this package's TFDS dataset `open_images` (`examples.load`: shuffled,
  class-aware or sequential order, each input pipeline reading its own share), decoded by
  `detection_classes.Decoder` (`detection_input.Decoder` on the model's classes) into Model
  Garden's decoded layout and batched by whatever parser the task passes
  (`detection_input.Parser`, or Model Garden's own parsers);
- the metric: the Open Images detection mAP (`evaluation.DetectionEvaluator` through its Model
  Garden interface; challenge protocol or V2), ground truth expanded over the dataset's hierarchy,
  the global batch gathered across replicas and workers, with the per-class table written next to
  metrics.json by the trainer (`write_evaluation`), and the model's own detections (unexpanded) in
  the official predictions CSV, `predictions.csv`, which `oi-evaluate` re-scores under any protocol
  or expansion without running the model again.

The task config needs Model Garden's detection fields plus `train_data`/`validation_data` with
`tfds_name`, `tfds_data_dir`, `tfds_split`, `order`, `seed`, `deterministic`, and an `evaluation`
of `configs.detection.Evaluation`.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from oi_models import labels as labels_lib
from oi_models.configs import detection as det_cfg
from oi_models.dataloaders import detection_input
from oi_models.dataloaders import examples
from oi_models.evaluation import DetectionEvaluator
from oi_models.evaluation import model_garden
from oi_models.evaluation import predictions as predictions_lib
from oi_models.evaluation import report
from oi_models.tasks import classification
from oi_models.tasks import detection_classes

LABEL_OFFSET = detection_input.LABEL_OFFSET
# source_id (int64) travels through the replicas' float32 all-reduce as four exact 16-bit pieces.
_ID_PIECES = 4
PREDICTION_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def tfds_builder(config) -> tfds.core.DatasetBuilder:
  """The `open_images` builder a data config names (`tfds_name`, `tfds_data_dir`)."""
  import oi_models.datasets  # pylint: disable=g-import-not-at-top,unused-import  (registers open_images)
  return tfds.builder(config.tfds_name,
                      data_dir=os.path.expanduser(config.tfds_data_dir) if config.tfds_data_dir else None)


def static_batch(inputs, replica_batch_size_of):
  """`inputs` with the per-replica batch made static when a distributed dataset lost it.

  Model Garden's ROI sampler needs a static batch; in training every replica gets its equal share
  (drop_remainder) of `replica_batch_size_of` (the global batch size).
  """
  images, _ = inputs
  if images.shape[0] is not None:
    return inputs
  context = tf.distribute.get_replica_context()
  replicas = context.num_replicas_in_sync if context is not None else 1
  batch = replica_batch_size_of // replicas
  return tf.nest.map_structure(lambda t: tf.ensure_shape(t, [batch] + t.shape[1:].as_list()), inputs)


class OpenImagesDetection:
  """Open Images classes, input and evaluation for a Model Garden detection task (module docstring)."""

  def __init__(self, params, logging_dir: Optional[str] = None, name: Optional[str] = None):
    if params.evaluation.protocol not in det_cfg.PROTOCOLS:
      raise ValueError(f"evaluation.protocol must be one of {det_cfg.PROTOCOLS}")
    self._builders = {}
    builder = self._builder(params.train_data)
    self.label_map = detection_classes.resolve(getattr(params, "class_list", ""),
                                               detection_classes.dataset_classes(builder),
                                               params.train_data.tfds_name)
    num_classes = det_cfg.model_num_classes(params.model.num_classes, len(self.label_map),
                                            getattr(params, "class_list", "")
                                            or params.train_data.tfds_name)
    if logging_dir:  # oi-export and a later run's init_checkpoint find the model's classes there
      detection_classes.keep_in_model_dir(self.label_map, logging_dir)
    super().__init__(params.replace(model={"num_classes": num_classes}), logging_dir, name)
    self._expander = None
    if params.evaluation.expand_hierarchy and "hierarchy" in builder.info.metadata:
      self._expander = labels_lib.Expander(
          labels_lib.Hierarchy(json.loads(builder.info.metadata["hierarchy"])), self.label_map)
    self._evaluator = DetectionEvaluator(len(self.label_map), params.evaluation.protocol,
                                         params.evaluation.iou_threshold,
                                         class_keys=self.label_map.mids, label_offset=LABEL_OFFSET)
    self._last_result = None
    self._num_images = 0
    self._detections = []  # the evaluation's detections: (image keys, classes, scores, boxes [0, 1])

  def _builder(self, config) -> tfds.core.DatasetBuilder:
    key = (config.tfds_name, config.tfds_data_dir)
    if key not in self._builders:
      self._builders[key] = tfds_builder(config)
    return self._builders[key]

  # Input.

  def open_images_dataset(self, params, parser,
                          input_context: Optional[tf.distribute.InputContext] = None
                          ) -> tf.data.Dataset:
    """This input pipeline's share of a split, decoded, parsed by `parser` and batched."""
    builder = self._builder(params)
    num_workers = input_context.num_input_pipelines if input_context else 1
    worker = input_context.input_pipeline_id if input_context else 0
    batch_size = (input_context.get_per_replica_batch_size(params.global_batch_size)
                  if input_context else params.global_batch_size)
    stream = examples.load(builder, params.tfds_split, order=params.order, seed=params.seed,
                           num_workers=num_workers, worker_index=worker,
                           deterministic=params.deterministic)
    return detection_input.dataset(stream, detection_classes.Decoder(builder.info.features,
                                                                     self.label_map),
                                   parser, is_training=params.is_training, batch_size=batch_size,
                                   drop_remainder=params.drop_remainder,
                                   deterministic=params.deterministic)

  # Evaluation.

  def build_metrics(self, training: bool = True):
    """The task's loss means in training; the mAP is computed on the host at evaluation."""
    return super().build_metrics(training) if training else []

  def evaluation_logs(self, outputs: dict, labels: dict) -> dict:
    """A validation step's logs: detections and ground truth of the global batch for the evaluator.

    `outputs` holds the model's detections (boxes in pixels of the resized image), `labels` the
    eval labels (`image_info`, `groundtruths` of `detection_input.Parser` or Model Garden's parsers
    with the Open Images image-level labels).
    """
    predictions = {k: outputs[k] for k in PREDICTION_KEYS}
    predictions["image_info"] = labels["image_info"]
    groundtruths = dict(labels["groundtruths"])
    ids = tf.bitcast(tf.cast(groundtruths.pop("source_id"), tf.int64), tf.uint64)
    groundtruths["source_id_pieces"] = tf.stack(
        [tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(ids, tf.constant(16 * i, tf.uint64)),
                                        tf.constant(0xFFFF, tf.uint64)), tf.float32)
         for i in range(_ID_PIECES)], axis=-1)
    # Every replica gets the whole global batch (rows of short or empty last batches masked), so each
    # worker's evaluator sees all of it: the classifier's all-reduce gather, which every strategy has.
    gathered = classification.gather_replicas(
        {**{f"gt/{k}": v for k, v in groundtruths.items()},
         **{f"pred/{k}": v for k, v in predictions.items()}})
    return {self.loss: 0.0, "groundtruths": gathered, "predictions": {}}

  def aggregate_logs(self, state=None, step_outputs=None):
    """Adds a step's global batch (the first local replica's gathered copy) to the evaluator."""
    if state is None:
      self._evaluator.reset_states()
      self._num_images = 0
      self._detections = []
      state = self._evaluator
    gathered = {k: np.asarray(v[0] if isinstance(v, tuple) else v)
                for k, v in step_outputs["groundtruths"].items()}
    valid = gathered.pop(classification._VALID) > 0  # pylint: disable=protected-access
    groundtruths = {k[3:]: v[valid] for k, v in gathered.items() if k.startswith("gt/")}
    predictions = {k[5:]: v[valid] for k, v in gathered.items() if k.startswith("pred/")}
    pieces = groundtruths.pop("source_id_pieces").astype(np.uint64)
    groundtruths["source_id"] = sum(pieces[:, i] << np.uint64(16 * i)
                                    for i in range(_ID_PIECES)).view(np.int64)
    self._num_images += int(valid.sum())
    truth, detections = model_garden.detection_columns(groundtruths, predictions, LABEL_OFFSET)
    keys, classes, boxes, group_of, label_keys, label_classes = truth
    self._detections.append(_normalized(detections, groundtruths["source_id"],
                                        predictions["image_info"]))
    if self._expander is not None:
      rows, classes = self._expander.boxes(classes)
      keys, boxes, group_of = keys[rows], boxes[rows], group_of[rows]
      # detection_columns lists each image's positive labels first, then its verified negatives.
      num_positive = int(np.sum(model_garden._valid(  # pylint: disable=protected-access
          groundtruths["num_image_labels_positive"],
          np.asarray(groundtruths["image_labels_positive"]).shape[1])
          & (np.asarray(groundtruths["image_labels_positive"]) >= LABEL_OFFSET)))
      confidence = (np.arange(len(label_classes)) < num_positive).astype(np.float32)
      rows, label_classes = self._expander.image_labels(label_classes, confidence)
      label_keys = label_keys[rows]
    state.add_ground_truth(keys, classes, boxes, group_of, label_keys, label_classes)
    if self._expander is not None and self.task_config.evaluation.expand_predictions:
      det_keys, det_classes, det_scores, det_boxes = detections
      rows, det_classes = self._expander.predictions(det_classes)
      detections = det_keys[rows], det_classes, det_scores[rows], det_boxes[rows]
    state.add_detections(*detections)
    return state

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
    """mAP and counts for the logs and TensorBoard; the per-class results go to `write_evaluation`."""
    result = aggregated_logs.evaluate()
    aggregated_logs.reset_states()
    self._last_result = result
    logs = result.metrics(self.label_map.mids)
    mean_ap_key = next(iter(logs))
    return {mean_ap_key: float(np.nan_to_num(result.mean_ap)),
            "num_classes_evaluated": int((result.num_gt > 0).sum())}

  def write_evaluation(self, output_dir: str, step: int) -> dict:
    """Writes metrics.json and per_class.csv (MID, display name, AP, counts) of the last evaluation."""
    result = self._last_result
    if result is None:
      return {}
    config = self.task_config
    mode = {"task": "detection", "protocol": config.evaluation.protocol,
            "image_level_labels": result.uses_image_labels,
            "expand_ground_truth": self._expander is not None,
            "expand_predictions": self._expander is not None and config.evaluation.expand_predictions,
            "iou_threshold": result.iou_threshold, "num_classes": len(self.label_map),
            "num_classes_evaluated": int((result.num_gt > 0).sum()), "global_step": int(step),
            "num_images": self._num_images,
            "split": config.validation_data.tfds_split}
    summary = report.summary_dict(result.metrics(self.label_map.mids), result.mean_ap,
                                  report.detection_table(result, self.label_map), mode)
    paths = report.write(output_dir, summary, report.DETECTION_COLUMNS)
    paths["predictions"] = os.path.join(output_dir, report.PREDICTIONS_FILE)
    columns = [np.concatenate(c) for c in zip(*self._detections)] if self._detections else [
        np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4))]
    predictions_lib.write_predictions(paths["predictions"], *columns, self.label_map)
    return paths


def _normalized(detections, source_ids, image_info):
  """`detection_columns`' detections (boxes in pixels of the original image) with boxes in [0, 1]
  of their image, as the official predictions CSV holds them."""
  keys, classes, scores, boxes = detections
  image_keys = model_garden.image_keys(source_ids)
  sizes = np.asarray(image_info, np.float64)[:, 0, :]  # [B, (height, width)] of the original image
  order = np.argsort(image_keys)
  rows = order[np.searchsorted(image_keys[order], keys)]
  return keys, classes, scores, np.clip(boxes / np.tile(sizes, 2)[rows], 0.0, 1.0)
