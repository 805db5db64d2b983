"""Detector input: `open_images` examples to Model Garden (Faster/Mask R-CNN) training and eval tensors.

Two steps, as in Model Garden:
- `Decoder` maps a TFDS example to the dict Model Garden's decoders produce (`image`, `source_id`,
  `height`, `width`, `groundtruth_classes`, `groundtruth_is_crowd`, `groundtruth_area`,
  `groundtruth_boxes` normalized (ymin, xmin, ymax, xmax)), plus the Open Images extras evaluation needs:
  image-level positive and verified-negative labels, in the detector's class space.
- `Parser` turns that dict into `(image, labels)` with the structure of
  `official.vision.dataloaders.maskrcnn_input.Parser`, so Model Garden's Faster R-CNN task and model can
  consume it. It exists because that Parser resizes to fit a fixed output box (long side = output size),
  while the reference detector resizes keep-aspect with min 600 / max 1024 (scale = min(600 / short
  side, 1024 / long side)); it composes the same Model Garden ops with `resize_and_crop_image_v2`. The
  image is padded bottom/right to a static `padded_size` (TPUs need static shapes); ground truth is
  padded with -1 to static lengths.

Classes: Model Garden detectors reserve class 0 for background, so the model's class is the dataset's
boxable ClassLabel index + `LABEL_OFFSET` (1); a model has `num_boxable + 1` classes. Image-level labels
are moved from the image-level class list to the boxable one (labels of non-boxable classes are dropped),
then offset the same way.

Group-of boxes map to Model Garden's `is_crowd` by the evaluator's own rule (`io.boxes.is_group_of`:
IsGroupOf -1, unknown, counts as group-of). The reference detector trained on them as ordinary boxes,
so the Parser keeps them for training unless `skip_group_of_during_training`; evaluation receives them as
`is_crowds` (1 = group-of) for the Open Images metric.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from official.vision.dataloaders import decoder
from official.vision.dataloaders import parser
from official.vision.dataloaders import utils
from official.vision.ops import anchor
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops
from official.vision.utils.object_detection import faster_rcnn_box_coder

from oi_models.dataloaders import examples
from oi_models.io import boxes as boxes_lib
from oi_models.modeling.faster_rcnn import anchors as anchors_lib
from oi_models.modeling.faster_rcnn import roi_generator

LABEL_OFFSET = 1
RESIZE_BACKENDS = ("opencv", "tensorflow")


def keep_aspect_size(image_size: tf.Tensor, short_side: float, long_side: float) -> tf.Tensor:
  """float32 [2] resized (height, width): the short side to `short_side` unless the long side would
  pass `long_side`, then the long side to it; rounded as `preprocess_ops.resize_and_crop_image_v2`."""
  image_size = tf.cast(image_size, tf.float32)
  by_short = tf.math.round(image_size * (short_side / tf.reduce_min(image_size)))
  by_long = tf.math.round(image_size * (long_side / tf.reduce_max(image_size)))
  return tf.where(tf.reduce_max(by_short) > long_side, by_long, by_short)


def boxes_to_resized_pixels(boxes: tf.Tensor, size: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
  """Normalized (ymin, xmin, ymax, xmax) boxes in pixels of the image resized to `size`, mirrored
  when `flip`, clipped to it: Model Garden's flip, denormalize and `resize_and_crop_boxes` in one
  affine step (a handful of ops instead of dozens; per-op overhead dominates small tensors)."""
  mirrored = tf.gather(boxes, [0, 3, 2, 1], axis=1) * [1.0, -1.0, 1.0, -1.0] + [0.0, 1.0, 0.0, 1.0]
  extent = tf.tile(size, [2])
  return tf.clip_by_value(tf.where(flip, mirrored, boxes) * extent, 0.0, extent)


def _opencv_resize(image: np.ndarray, size: np.ndarray, flip: np.ndarray,
                   padded_size: np.ndarray) -> np.ndarray:
  """Bilinear resize (half-pixel centres, as TF's) of a uint8 image, mirrored when `flip`, placed
  top-left in a zero canvas of `padded_size` unless that is empty.

  OpenCV resizes straight into the canvas and mirrors in place; only the padding is zeroed. Each of
  numpy's strided reversal and `tf.pad` on uint8 alone costs several times this whole call.
  """
  height, width = int(size[0]), int(size[1])
  if padded_size.size:
    canvas = np.empty((int(padded_size[0]), int(padded_size[1]), 3), np.uint8)
    canvas[height:] = 0
    canvas[:height, width:] = 0
    resized = canvas[:height, :width]
    cv2.resize(image, (width, height), dst=resized, interpolation=cv2.INTER_LINEAR)
  else:
    canvas = resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
  if flip:
    cv2.flip(resized, 1, dst=resized)
  return canvas


class RpnAnchorLabeler(anchor.RpnAnchorLabeler):
  """Model Garden's RPN labeler (IoU thresholds, balanced sampling) whose box targets are encoded with
  the proposals' decode weights (the reference's [10, 10, 5, 5]), so the RPN learns what the ROI
  generator decodes; Model Garden's RPN labeler encodes unscaled."""

  def __init__(self, match_threshold: float = 0.7, unmatched_threshold: float = 0.3,
               rpn_batch_size_per_im: int = 256, rpn_fg_fraction: float = 0.5,
               box_coder_weights: Sequence[float] = roi_generator.REFERENCE_WEIGHTS):
    super().__init__(match_threshold, unmatched_threshold, rpn_batch_size_per_im, rpn_fg_fraction)
    self.box_coder = faster_rcnn_box_coder.FasterRcnnBoxCoder(scale_factors=list(box_coder_weights))


def label_anchors(labeler: RpnAnchorLabeler, anchor_boxes: dict, gt_boxes: tf.Tensor,
                  gt_classes: tf.Tensor, image_size: tf.Tensor) -> tuple[dict, dict]:
  """RPN targets of one image: ({level: [h, w, A]} scores, {level: [h, w, 4A]} box targets).

  `gt_boxes` [N, 4] in pixels of the resized image (no padding rows), `image_size` its (height,
  width) before padding. Anchors wholly in the padding (top-left corner past the image) get score -1,
  never sampled, as the reference prunes anchors outside the image in training.
  """
  scores, boxes = labeler.label_anchors(anchor_boxes, gt_boxes,
                                        tf.cast(tf.expand_dims(gt_classes, axis=-1), tf.float32))
  image_size = tf.cast(image_size, tf.float32)
  outside = {k: (v[..., 0::4] >= image_size[0]) | (v[..., 1::4] >= image_size[1])
             for k, v in anchor_boxes.items()}
  return {k: tf.where(outside[k], -tf.ones_like(v), v) for k, v in scores.items()}, boxes


class Decoder(decoder.Decoder):
  """`open_images` example (image encoded or decoded) -> Model Garden decoded dict + Open Images extras.

  Extra keys: `groundtruth_image_labels_positive`, `groundtruth_image_labels_negative` (int64, model
  classes: boxable index + 1; human-verified image-level labels with confidence >= 0.5 are positive,
  others verified negatives).
  """

  def __init__(self, image_label_to_box_class: np.ndarray):
    """`image_label_to_box_class[i]`: boxable index of image-level class i, or -1 (see `from_features`)."""
    self._image_label_map = tf.constant(np.asarray(image_label_to_box_class, np.int64))

  @classmethod
  def from_features(cls, features: tfds.features.FeaturesDict) -> "Decoder":
    """The decoder for a dataset, mapping its image-level ClassLabel onto its boxable one by MID."""
    return cls(examples.class_index_map(features["image_labels"]["label"].names,
                                        features["objects"]["label"].names))

  def decode(self, serialized_example):
    example = serialized_example  # A TFDS feature dict, despite Model Garden's argument name.
    image = examples.decode_image(example["image"])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    objects = example["objects"]
    boxes = objects["bbox"]
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            * tf.cast(height * width, tf.float32))
    image_labels = example["image_labels"]
    box_class = tf.gather(self._image_label_map, image_labels["label"])
    boxable = box_class >= 0
    positive = image_labels["confidence"] >= 0.5
    return {
        "image": image,
        "source_id": examples.image_id_to_source_id(example["image/id"]),
        "height": tf.cast(height, tf.int64),
        "width": tf.cast(width, tf.int64),
        "groundtruth_classes": objects["label"] + LABEL_OFFSET,
        "groundtruth_is_crowd": boxes_lib.is_group_of(objects["is_group_of"]),
        "groundtruth_area": area,
        "groundtruth_boxes": boxes,
        "groundtruth_image_labels_positive":
            tf.boolean_mask(box_class, boxable & positive) + LABEL_OFFSET,
        "groundtruth_image_labels_negative":
            tf.boolean_mask(box_class, boxable & ~positive) + LABEL_OFFSET,
    }


class Parser(parser.Parser):
  """Keep-aspect resize, optional horizontal flip, static padding, RPN targets (Model Garden layout).

  Training labels: `image_info`, `anchor_boxes`, `rpn_score_targets`, `rpn_box_targets`, `gt_boxes`
  (pixels of the resized image), `gt_classes` — as `maskrcnn_input.Parser`. Eval labels: `image_info`,
  `anchor_boxes`, `groundtruths` with Model Garden's keys (`source_id`, `height`, `width`,
  `num_detections` (before padding), `boxes` in pixels of the original image, `classes`, `areas`,
  `is_crowds` = group-of) plus `image_labels_positive`, `image_labels_negative` (padded with -1 to
  `max_num_image_labels`) and their counts `num_image_labels_positive`, `num_image_labels_negative`.
  `image_info` is [[original h, w], [resized h, w], [y scale, x scale], [0, 0]].
  """

  def __init__(self, *, short_side: float = 600, long_side: float = 1024,
               padded_size: Sequence[int] | None = None, min_level: int = 2, max_level: int = 6,
               anchor_generator: anchors_lib.AnchorGenerator | None = None,
               box_coder_weights: Sequence[float] = roi_generator.REFERENCE_WEIGHTS,
               rpn_match_threshold: float = 0.7,
               rpn_unmatched_threshold: float = 0.3, rpn_batch_size_per_im: int = 256,
               rpn_fg_fraction: float = 0.5, aug_rand_hflip: bool = True,
               skip_group_of_during_training: bool = False, max_num_instances: int = 100,
               max_num_image_labels: int = 100, rpn_targets: bool = True, normalize: bool = True,
               resize_backend: str = "opencv", dtype: str = "float32"):
    """Args mirror `maskrcnn_input.Parser`, except:

    Args:
      short_side, long_side: scale = min(short_side / short side, long_side / long side).
      padded_size: static [height, width] of the output image; default: long_side rounded up to a
        multiple of 2**max_level, both ways (holds portrait and landscape images).
      min_level, max_level: the padded size is a multiple of 2**max_level.
      anchor_generator: the model's own anchor generator (`modeling.faster_rcnn.model.anchor_generator
        (config)`, which the task and the export use too); default: the reference's stride-8 grid.
      box_coder_weights: scales of the RPN box targets: the model's `roi_generator.decode_weights`.
      skip_group_of_during_training: drop group-of boxes from training targets.
      max_num_image_labels: static length of the image-level label lists in eval ground truth.
      rpn_targets: generate anchors and assign RPN targets here (`label_anchors`, as the detector
        task assigns them in its step), as Model Garden's Faster R-CNN task expects; False leaves anchors and their matching to the model (on the accelerator, as the TF
        Object Detection API did) and drops `anchor_boxes`, `rpn_score_targets` and
        `rpn_box_targets` from the labels. On CPU matching is the dearest step by far, and the
        anchors of a 1024x1024 input (levels 2-6) alone are 5.6 MB per image to batch.
      normalize: output the image normalized (Model Garden's mean/std) in `dtype`; False outputs uint8
        pixels (padding 0) for the model to normalize, a quarter of the bytes to batch and transfer.
      resize_backend: "opencv" resizes, mirrors and (uint8 output) pads with OpenCV's fixed-point
        SIMD kernels inside one `tf.numpy_function`: ~1 ms per 1024-px photo against ~9 ms for
        TF's float resize, `tf.reverse` and `tf.pad` on uint8 (`benchmarks/input_pipeline.py`;
        pixels differ by at most 1 level). "tensorflow" keeps the whole parser a TF graph (for
        tf.data service, or a graph exported without Python).
    """
    if resize_backend not in RESIZE_BACKENDS:
      raise ValueError(f"resize_backend must be one of {RESIZE_BACKENDS}, got {resize_backend!r}")
    self._resize_backend = resize_backend
    self._short_side = short_side
    self._long_side = long_side
    self._padded_size = (list(padded_size) if padded_size is not None else
                         preprocess_ops.compute_padded_size([long_side, long_side], 2**max_level))
    self._anchor_generator = anchor_generator or anchors_lib.AnchorGenerator()
    self._anchor_labeler = RpnAnchorLabeler(rpn_match_threshold, rpn_unmatched_threshold,
                                            rpn_batch_size_per_im, rpn_fg_fraction,
                                            box_coder_weights)
    self._aug_rand_hflip = aug_rand_hflip
    self._skip_group_of = skip_group_of_during_training
    self._max_num_instances = max_num_instances
    self._max_num_image_labels = max_num_image_labels
    self._rpn_targets = rpn_targets
    self._normalize = normalize
    self._dtype = dtype

  def _resize(self, image, flip=None):
    """Resized, mirrored if `flip`, padded output image (normalized in dtype, or uint8); image_info.

    The image is resized first and mirrored after, on fewer pixels. image_info is Model Garden's
    [[original h, w], [resized h, w], [y scale, x scale], [0, 0]].
    """
    image_size = tf.cast(tf.shape(image)[0:2], tf.float32)
    size = keep_aspect_size(image_size, self._short_side, self._long_side)
    flip = tf.constant(False) if flip is None else flip
    if self._resize_backend == "opencv":
      # uint8 output is padded inside the same call; a normalized one is padded after normalizing,
      # so that padding is 0 in normalized units, as in Model Garden.
      padded = tf.constant([] if self._normalize else self._padded_size, tf.int32)
      image = tf.numpy_function(_opencv_resize, [image, tf.cast(size, tf.int32), flip, padded],
                                tf.uint8, stateful=False)
      image.set_shape([None, None, 3])
    else:
      image = tf.cast(tf.round(tf.image.resize(image, tf.cast(size, tf.int32))), tf.uint8)
      image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    if self._normalize:
      image = tf.cast(preprocess_ops.normalize_image(image), self._dtype)
    if self._normalize or self._resize_backend != "opencv":
      image = tf.image.pad_to_bounding_box(image, 0, 0, *self._padded_size)
    image.set_shape(list(self._padded_size) + [3])
    image_info = tf.stack([image_size, size, size / image_size, tf.zeros([2])])
    return image, image_info

  def _parse_train_data(self, data):
    classes = data["groundtruth_classes"]
    boxes = data["groundtruth_boxes"]
    if self._skip_group_of:
      keep = tf.where(tf.logical_not(data["groundtruth_is_crowd"]))[:, 0]
      classes, boxes = tf.gather(classes, keep), tf.gather(boxes, keep)
    flip = (tf.random.uniform([]) > 0.5) if self._aug_rand_hflip else tf.constant(False)
    image, image_info = self._resize(data["image"], flip)
    boxes = boxes_to_resized_pixels(boxes, image_info[1], flip)
    keep = box_ops.get_non_empty_box_indices(boxes)
    boxes, classes = tf.gather(boxes, keep), tf.gather(classes, keep)
    labels = {
        "image_info": image_info,
        "gt_boxes": preprocess_ops.clip_or_pad_to_fixed_size(boxes, self._max_num_instances, -1),
        "gt_classes": preprocess_ops.clip_or_pad_to_fixed_size(classes, self._max_num_instances, -1),
    }
    if self._rpn_targets:
      labels["anchor_boxes"] = self._anchors()
      labels["rpn_score_targets"], labels["rpn_box_targets"] = label_anchors(
          self._anchor_labeler, labels["anchor_boxes"], boxes, classes, image_info[1])
    return image, labels

  def _parse_eval_data(self, data):
    image = data["image"]
    image_shape = tf.shape(image)[0:2]
    image, image_info = self._resize(image)
    groundtruths = utils.pad_groundtruths_to_fixed_size({
        "source_id": data["source_id"],
        "height": data["height"],
        "width": data["width"],
        "num_detections": tf.shape(data["groundtruth_classes"])[0],
        "boxes": box_ops.denormalize_boxes(data["groundtruth_boxes"], image_shape),
        "classes": data["groundtruth_classes"],
        "areas": data["groundtruth_area"],
        "is_crowds": tf.cast(data["groundtruth_is_crowd"], tf.int32),
    }, self._max_num_instances)
    for kind in ("positive", "negative"):
      labels = data[f"groundtruth_image_labels_{kind}"]
      groundtruths[f"num_image_labels_{kind}"] = tf.shape(labels)[0]
      groundtruths[f"image_labels_{kind}"] = preprocess_ops.clip_or_pad_to_fixed_size(
          labels, self._max_num_image_labels, -1)
    labels = {"image_info": image_info, "groundtruths": groundtruths}
    if self._rpn_targets:
      labels["anchor_boxes"] = self._anchors()
    return image, labels

  def _anchors(self) -> dict:
    """The anchors of the padded size, with static shapes (batching needs them)."""
    grid = [(s + self._anchor_generator.stride - 1) // self._anchor_generator.stride
            for s in self._padded_size]
    depth = 4 * self._anchor_generator.num_anchors_per_location
    return {k: tf.ensure_shape(v, grid + [depth])
            for k, v in self._anchor_generator(self._padded_size).items()}


def dataset(examples_ds: tf.data.Dataset, decoder_: Decoder, parser_: Parser, *, is_training: bool,
            batch_size: int, drop_remainder: bool | None = None,
            deterministic: bool | None = None) -> tf.data.Dataset:
  """Batches of `(image, labels)` from `examples.load(...)` output.

  `drop_remainder` (default: `is_training`) makes the batch dimension static, as TPUs need; for TPU
  evaluation set it, at the cost of the last partial batch.
  """
  drop = is_training if drop_remainder is None else drop_remainder
  parse = parser_.parse_fn(is_training)
  return examples.parse_and_batch(examples_ds, lambda ex: parse(decoder_.decode(ex)), batch_size,
                                  drop_remainder=drop, deterministic=deterministic)
