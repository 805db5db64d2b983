"""The Faster R-CNN detector as a SavedModel, with the TF Object Detection API's output names.

Model Garden's `DetectionModule` resizes every image to one fixed size with ImageNet normalisation
and returns boxes in pixels of the resized image. This detector's serving path is the reference's
(`FasterRCNNModel.detect`): each image of a request is decoded, resized keeping its aspect ratio
(TF1 bilinear, `preprocessing.min_dimension` / `max_dimension`), scaled to [-1, 1] and detected on
its own (`tf.map_fn`), and boxes are normalised to the original image, so a request may mix sizes.

Outputs (batch first, `max_num_detections` rows per image, valid rows first, by descending score):

  detection_boxes              float32 [B, N, 4]  (ymin, xmin, ymax, xmax) in [0, 1]   TF OD API
  detection_scores             float32 [B, N]                                          TF OD API
  detection_classes            float32 [B, N]     label-map id: class list index + 1   TF OD API
  num_detections               float32 [B]                                             TF OD API
  detection_boxes_open_images  float32 [B, N, 4]  (XMin, XMax, YMin, YMax), the CSV's order
  detection_class_index        int32 [B, N]       index into the class list (-1: padding)
  detection_mids, detection_names  string [B, N]  ("" padding)

With `expand_hierarchy`, each detection is followed by copies for each ancestor class in the hierarchy
(same box and score), as the Open Images Challenge expands predictions; rows are then sorted by score
(stable) and N becomes `max_num_detections` times the longest ancestor chain plus one.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
from official.vision.serving import detection

from oi_models import labels as labels_lib
from oi_models.serving import export_base


class DetectorModule(export_base.ServingModule, detection.DetectionModule):
  """Serving module of a `configs.faster_rcnn.FasterRCNN` model (see the module docstring)."""

  def __init__(self, model_config, *, label_map: labels_lib.LabelMap, model=None,
               hierarchy: Optional[labels_lib.Hierarchy] = None, expand_hierarchy: bool = False):
    if model_config.num_classes != len(label_map) + 1:
      raise ValueError(f"the detector has {model_config.num_classes - 1} classes (+ background), "
                       f"the class list {len(label_map)}")
    if expand_hierarchy and hierarchy is None:
      raise ValueError("expand_hierarchy needs the class hierarchy")
    self._num_detections = model_config.detection_generator.max_num_detections
    self._ancestors = None
    if expand_hierarchy:
      table = labels_lib.Expander(hierarchy, label_map).up
      self._ancestors = (tf.constant(table.indptr), tf.constant(table.indices.astype(np.int64)))
      self._num_detections *= int(np.diff(table.indptr).max())
    super().__init__(model_config, label_map=label_map, model=model, hierarchy=hierarchy)
    self._detect = self.model.detect  # bound here: the export saves the variables, not the model
    # The per-image graph, traced once here as a concrete function that every signature's loop calls:
    # a tf.function in its place was traced a second time, eagerly, by tf.saved_model.save (the
    # full-depth detector's trace is ~13 s on 2 cores).
    self._detect_image = tf.function(
        self.detect_image, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)]
    ).get_concrete_function()

  def _build_model(self):
    from oi_models.modeling.faster_rcnn import model as model_lib  # pylint: disable=import-outside-toplevel
    return model_lib.build_faster_rcnn(self.params)

  def _expand(self, boxes, scores, classes, count):
    """Each of the `count` valid detections followed by its ancestors' copies, by score, padded."""
    indptr, indices = self._ancestors
    valid = tf.range(tf.shape(classes)[0]) < count
    classes = tf.boolean_mask(classes, valid)
    expanded = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr), classes)
    rows = expanded.value_rowids()
    boxes, scores = tf.gather(boxes, rows), tf.gather(scores, rows)
    classes = tf.cast(expanded.flat_values, tf.int32)
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    count = tf.shape(order)[0]
    pad = self._num_detections - count
    take = lambda x, value: tf.pad(tf.gather(x, order), [[0, pad]] + [[0, 0]] * (x.shape.rank - 1),
                                   constant_values=value)
    return take(boxes, 0.0), take(scores, 0.0), take(classes, -1), count

  def detect_image(self, image: tf.Tensor) -> dict:
    """Outputs (module docstring) of one uint8 [H, W, 3] image, without the batch dimension."""
    outputs = self._detect(image)
    count = tf.cast(outputs["num_detections"][0], tf.int32)
    boxes = tf.cast(outputs["detection_boxes"][0], tf.float32)
    scores = tf.cast(outputs["detection_scores"][0], tf.float32)
    valid = tf.range(tf.shape(scores)[0]) < count
    classes = tf.where(valid, tf.cast(outputs["detection_classes"][0], tf.int32) - 1, -1)
    if self._ancestors is not None:
      boxes, scores, classes, count = self._expand(boxes, scores, classes, count)
    valid = classes >= 0
    safe = tf.maximum(classes, 0)
    text = lambda table: tf.where(valid, tf.gather(table, safe), "")
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return {
        "detection_boxes": boxes,
        "detection_scores": scores,
        "detection_classes": tf.cast(classes + 1, tf.float32),
        "num_detections": tf.cast(count, tf.float32),
        "detection_boxes_open_images": tf.stack([xmin, xmax, ymin, ymax], axis=-1),
        "detection_class_index": classes,
        "detection_mids": text(self._mids),
        "detection_names": text(self._names),
    }

  def _output_signature(self) -> dict:
    n = self._num_detections
    spec = tf.TensorSpec
    return {"detection_boxes": spec([n, 4], tf.float32), "detection_scores": spec([n], tf.float32),
            "detection_classes": spec([n], tf.float32), "num_detections": spec([], tf.float32),
            "detection_boxes_open_images": spec([n, 4], tf.float32),
            "detection_class_index": spec([n], tf.int32), "detection_mids": spec([n], tf.string),
            "detection_names": spec([n], tf.string)}

  def _serve(self, decode, inputs):
    return tf.map_fn(lambda x: self._detect_image(decode(x)), inputs,
                     fn_output_signature=self._output_signature(), parallel_iterations=1)
