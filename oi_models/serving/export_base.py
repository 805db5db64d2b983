"""What the classifier and detector export modules share: input signatures, decoding, assets, saving.

Model Garden's `export_base.ExportModule` decodes encoded images and then stacks them, so one request
must hold images of one size, and its classifier casts resized images back to uint8 before
normalising. Here each image of a request is decoded and preprocessed on its own inside `tf.map_fn`
(`_serve(decode, inputs)` of the subclass), so a batch may mix sizes, JPEG and PNG, and the float
pixels the model sees are those of the training pipeline.

Signatures (batch dimension None, one input each, so TF Serving's REST API takes them as they are:
`{"instances": [{"b64": "..."}]}` for strings, nested lists for uint8 images):

  image_bytes   `image_bytes`: string [B], encoded JPEG/PNG/GIF/BMP of any sizes
  image_tensor  `input_tensor`: uint8 [B, H, W, 3] (one size per request)
  tf_example    `tf_example`: string [B], serialized tf.Example with the image in `image/encoded`

`serving_default` is one of them (the export's choice; image_bytes by default). Every output has the
batch as its first dimension, as TF Serving's row ("instances") format requires.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Mapping, Optional

import tensorflow as tf
from official.vision.serving import export_base

from oi_models import labels as labels_lib

SIGNATURES = ("image_bytes", "image_tensor", "tf_example")
INPUT_NAMES = {"image_bytes": "image_bytes", "image_tensor": "input_tensor",
               "tf_example": "tf_example"}
EXAMPLE_IMAGE_KEY = "image/encoded"  # Model Garden's and the TF OD API's tf.Example image feature
CLASS_LIST_ASSET = "class_list.csv"
HIERARCHY_ASSET = "hierarchy.json"
CONFIG_ASSET = "params.yaml"


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] of one encoded image: grayscale and RGBA become RGB, a GIF's first frame."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_example(serialized: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] of the image in a serialized tf.Example's `image/encoded`."""
  features = tf.io.parse_single_example(
      serialized, {EXAMPLE_IMAGE_KEY: tf.io.FixedLenFeature((), tf.string)})
  return decode_image(features[EXAMPLE_IMAGE_KEY])


class ServingModule(export_base.ExportModule):
  """Model Garden's vision export module with per-image decoding and the class list as assets.

  Subclasses implement `_serve(decode, inputs)`: the outputs for a batch `inputs` whose elements
  `decode` turns into uint8 [H, W, 3] images.
  """

  def __init__(self, params, *, label_map: labels_lib.LabelMap, model,
               hierarchy: Optional[labels_lib.Hierarchy] = None, input_image_size=(None, None)):
    self.label_map = label_map
    self.hierarchy = hierarchy
    super().__init__(params, batch_size=None, input_image_size=list(input_image_size), model=model)
    self._mids = tf.constant(label_map.mids)
    self._names = tf.constant(label_map.names)

  def _serve(self, decode: Callable[[tf.Tensor], tf.Tensor], inputs: tf.Tensor) -> dict:
    raise NotImplementedError

  def serve(self, images: tf.Tensor) -> dict:
    """Outputs for uint8 [B, H, W, 3] images (Model Garden's `serve` contract)."""
    return self._serve(tf.identity, images)

  @tf.function
  def inference_from_image_bytes(self, inputs: tf.Tensor):
    return self._serve(decode_image, inputs)

  @tf.function
  def inference_from_tf_example(self, inputs: tf.Tensor):
    return self._serve(decode_example, inputs)

  def get_inference_signatures(self, function_keys: Mapping[str, str]) -> dict:
    """Concrete functions by signature key, for {input kind: signature key} (as Model Garden's)."""
    signatures = {}
    for kind, key in function_keys.items():
      name = INPUT_NAMES.get(kind)
      if kind == "image_tensor":
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=name)
        signatures[key] = self.inference_from_image_tensors.get_concrete_function(spec)
      elif kind == "image_bytes":
        spec = tf.TensorSpec([None], tf.string, name=name)
        signatures[key] = self.inference_from_image_bytes.get_concrete_function(spec)
      elif kind == "tf_example":
        spec = tf.TensorSpec([None], tf.string, name=name)
        signatures[key] = self.inference_from_tf_example.get_concrete_function(spec)
      else:
        raise ValueError(f"unknown input kind {kind!r}; expected one of {SIGNATURES}")
    return signatures


def save(module: ServingModule, export_dir: str, default_signature: str = "image_bytes",
         params_yaml: Optional[str] = None) -> str:
  """Writes the SavedModel: every signature of SIGNATURES plus `serving_default`, and the assets.

  Assets: `class_list.csv` (MID,DisplayName in output order), `hierarchy.json` (when the module has
  one) and `params.yaml` (the config the model was built from, when given).
  """
  if default_signature not in SIGNATURES:
    raise ValueError(f"default signature must be one of {SIGNATURES}; got {default_signature!r}")
  keys = {kind: kind for kind in SIGNATURES}
  signatures = module.get_inference_signatures(keys)
  signatures["serving_default"] = signatures[default_signature]
  with tempfile.TemporaryDirectory() as staging:
    class_list = os.path.join(staging, CLASS_LIST_ASSET)
    module.label_map.to_csv(class_list)
    module.class_list_asset = tf.saved_model.Asset(class_list)
    if module.hierarchy is not None:
      if module.hierarchy.path is None:
        raise ValueError("the hierarchy to export must come from a file (Hierarchy.from_json)")
      hierarchy = os.path.join(staging, HIERARCHY_ASSET)
      shutil.copyfile(module.hierarchy.path, hierarchy)
      module.hierarchy_asset = tf.saved_model.Asset(hierarchy)
    if params_yaml is not None:
      config = os.path.join(staging, CONFIG_ASSET)
      with open(config, "w", encoding="utf-8") as f:
        f.write(params_yaml)
      module.config_asset = tf.saved_model.Asset(config)
    # The signatures capture the model's variables; saving them as a list, not the Keras model,
    # skips Keras's tracing of every layer's call for its own SavedModel format (most of an
    # export's time, and nothing serving uses).
    model = module.model
    del module.model
    module.model_variables = list(model.variables)
    try:
      tf.saved_model.save(module, export_dir, signatures=signatures)
    finally:
      del module.model_variables
      module.model = model
  return export_dir


def read_assets(export_dir: str) -> tuple[labels_lib.LabelMap, Optional[labels_lib.Hierarchy]]:
  """The class list and hierarchy a SavedModel of this package carries (TF-free)."""
  assets = os.path.join(export_dir, "assets")
  label_map = labels_lib.LabelMap.from_csv(os.path.join(assets, CLASS_LIST_ASSET))
  hierarchy_path = os.path.join(assets, HIERARCHY_ASSET)
  hierarchy = (labels_lib.Hierarchy.from_json(hierarchy_path) if os.path.exists(hierarchy_path)
               else None)
  return label_map, hierarchy
