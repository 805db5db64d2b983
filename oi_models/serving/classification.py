"""The Open Images classifier as a SavedModel: Model Garden's `ClassificationModule` with the task's
own evaluation preprocessing and outputs that name classes.

Preprocessing is the task's evaluation path (`dataloaders.classification_input.Parser`, eval): the
centre crop of `validation_data.center_crop_fraction` of the short side (when `aug_crop`), bilinear
resize to `model.input_size` in float, then Model Garden's ImageNet mean/std or VGG's mean
subtraction (`validation_data.preprocessing`), so a converted slim classifier sees what it was
trained on.

Outputs (batch first): `logits` and `probs` [B, C] (sigmoid: the classes are independent), as
Model Garden's module names them; `top_k_scores` [B, k], `top_k_classes` (int32 indices into the class
list), `top_k_mids` and `top_k_names` (strings) [B, k].
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
from official.vision.ops import preprocess_ops
from official.vision.serving import image_classification

from oi_models import labels as labels_lib
from oi_models.dataloaders import classification_input
from oi_models.serving import export_base


def preprocess(image: tf.Tensor, output_size, *, preprocessing: str = "imagenet",
               center_crop_fraction: Optional[float] = 0.875) -> tf.Tensor:
  """One uint8 [H, W, 3] image -> float32 [h, w, 3] network input, as the task's evaluation."""
  if preprocessing not in classification_input.PREPROCESSING:
    raise ValueError(f"preprocessing must be one of {classification_input.PREPROCESSING}")
  image = tf.cast(image, tf.float32)
  if center_crop_fraction:
    image = preprocess_ops.center_crop_image(image, center_crop_fraction)
  image = tf.image.resize(image, list(output_size), method=tf.image.ResizeMethod.BILINEAR)
  image.set_shape(list(output_size) + [3])
  if preprocessing == "vgg":
    return image - classification_input.VGG_MEAN_RGB
  return preprocess_ops.normalize_image(image, offset=preprocess_ops.MEAN_RGB,
                                        scale=preprocess_ops.STDDEV_RGB)


class ClassifierModule(export_base.ServingModule, image_classification.ClassificationModule):
  """Serving module of a `configs.classification` experiment (see the module docstring)."""

  def __init__(self, params, *, label_map: labels_lib.LabelMap, model=None,
               hierarchy: Optional[labels_lib.Hierarchy] = None, top_k: int = 5):
    if params.task.model.num_classes not in (0, len(label_map)):
      raise ValueError(f"the model has {params.task.model.num_classes} classes, the class list "
                       f"{len(label_map)}")
    params = params.replace(task={"model": {"num_classes": len(label_map)}})
    self._top_k = max(1, min(top_k, len(label_map)))
    data = params.task.validation_data
    self._preprocessing = data.preprocessing
    self._center_crop_fraction = data.center_crop_fraction if data.aug_crop else None
    if model is None:
      import oi_models.modeling.backbones  # pylint: disable=import-outside-toplevel,unused-import  (registers them)
    super().__init__(params, label_map=label_map, model=model, hierarchy=hierarchy,
                     input_image_size=params.task.model.input_size[:2])

  def preprocess_image(self, image: tf.Tensor) -> tf.Tensor:
    return preprocess(image, self._input_image_size, preprocessing=self._preprocessing,
                      center_crop_fraction=self._center_crop_fraction)

  def _serve(self, decode, inputs):
    with tf.device("cpu:0"):
      images = tf.map_fn(lambda x: self.preprocess_image(decode(x)), inputs,
                         fn_output_signature=tf.TensorSpec(self._input_image_size + [3], tf.float32),
                         parallel_iterations=32)
    logits = tf.cast(self.inference_step(images), tf.float32)
    probs = tf.sigmoid(logits)
    scores, classes = tf.math.top_k(probs, k=self._top_k)
    return {"logits": logits, "probs": probs, "top_k_scores": scores, "top_k_classes": classes,
            "top_k_mids": tf.gather(self._mids, classes), "top_k_names": tf.gather(self._names, classes)}
