"""Keras Applications' `InceptionResNetV2` weights (the ImageNet .h5 files) into this package's backbone.

Keras Applications names only 125 of its 780 layers (`mixed_5b`, `block35_1_mixed`, `block35_1_conv`, ...,
`conv_7b`); every branch convolution and batch norm is an auto-named `conv2d_N` / `batch_normalization_N`,
and `model.layers` is not in creation order, so neither loading by name nor by position fits a model
built by other code. The layers are matched by structure instead: each weight layer gets a key that any
graph of the same architecture gives it, whatever the layers are called:

- a layer with a Keras Applications name (`block35_3_conv`, `conv_7b`, `conv_7b_bn`) is keyed by it,
  except that the final block8 (linear, scale 1; Keras Applications' `block8_10`) is keyed by its role,
  since its number is the block8 repeats + 1 in a reduced model;
- a layer inside a branch of a named concatenation is keyed by (concatenation, branch index, position
  from the branch's start), found by walking the branch back from the concatenation to the tensor it
  forks from (the block input, read by every branch);
- the stem's layers are keyed by their position from the input, found by walking back from the tensor
  mixed_5b's branches fork from.

The source model's weights are copied to the layers with the same keys in one or more target models (the
stride-32 backbone, or a first stage plus its tail); source layers no target holds are reported.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

import tf_keras

_CONCAT_NAME = re.compile(r"^(mixed_(5b|6a|7a)|block(35|17|8)_\d+_mixed)$")
_NAMED_WEIGHT_LAYER = re.compile(r"^(block(35|17|8)_\d+_conv|conv_7b(_bn)?)$")
_BLOCK8 = re.compile(r"^block8_(\d+)_mixed$")
_WEIGHT_LAYERS = (tf_keras.layers.Conv2D, tf_keras.layers.BatchNormalization)


def _inbound(layer: tf_keras.layers.Layer) -> list[tf_keras.layers.Layer]:
  """The layers feeding `layer`, in call order (each layer here is called once)."""
  inbound = layer.inbound_nodes[0].inbound_layers
  return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _walk_back(layer: tf_keras.layers.Layer, stop) -> tuple[list[tf_keras.layers.Layer],
                                                             tf_keras.layers.Layer]:
  """Weight layers from `layer` back to the first layer `stop` accepts, in forward order, and that layer."""
  chain = []
  while not stop(layer):
    if isinstance(layer, _WEIGHT_LAYERS):
      chain.append(layer)
    (layer,) = _inbound(layer)
  return chain[::-1], layer


def _is_fork(layer: tf_keras.layers.Layer) -> bool:
  return len(layer.outbound_nodes) > 1 or isinstance(layer, tf_keras.layers.InputLayer)


def structural_keys(model: tf_keras.Model) -> dict[tuple, tf_keras.layers.Layer]:
  """{structural key: weight layer} for every weight layer of an Inception-ResNet-v2 graph in `model`."""
  final_block8 = max((int(m.group(1)) for m in map(_BLOCK8.match, (l.name for l in model.layers)) if m),
                     default=None)

  def role(name):  # the final block8 (linear, scale 1) is block8_{repeats + 1}: key it by its role
    return name.replace(f"block8_{final_block8}_", "block8_final_") if final_block8 else name

  keys = {}
  for layer in model.layers:
    if _NAMED_WEIGHT_LAYER.match(layer.name):
      keys[(role(layer.name),)] = layer
    elif _CONCAT_NAME.match(layer.name):
      for branch, start in enumerate(_inbound(layer)):
        chain, fork = _walk_back(start, _is_fork)
        keys.update({(role(layer.name), branch, position): weights
                     for position, weights in enumerate(chain)})
        if layer.name == "mixed_5b":
          stem, _ = _walk_back(fork, lambda l: isinstance(l, tf_keras.layers.InputLayer))
          keys.update({("stem", position): weights for position, weights in enumerate(stem)})
  keyed = {id(l) for l in keys.values()}
  unkeyed = [l.name for l in model.layers if isinstance(l, _WEIGHT_LAYERS) and id(l) not in keyed]
  if unkeyed:
    raise ValueError(f"{model.name}: weight layers outside the Inception-ResNet-v2 structure: {unkeyed}")
  return keys


@dataclasses.dataclass
class CopyReport:
  """What a structural copy did: weight layers copied, values copied, source layers no target holds."""
  copied_layers: int
  copied_values: int
  unused: list[str]


def copy_weights(source: tf_keras.Model, targets: Iterable[tf_keras.Model]) -> CopyReport:
  """Copies every weight layer of `source` to the structurally same layer of `targets`.

  Raises when a target layer has no source (it would stay at random init), when shapes differ, or when
  two targets hold the same layer.
  """
  source_keys = structural_keys(source)
  copied_layers = copied_values = 0
  used = set()
  for target in targets:
    for key, layer in structural_keys(target).items():
      if key not in source_keys:
        raise ValueError(f"{target.name}/{layer.name} (structural key {key}) has no source layer in "
                         f"{source.name}")
      if key in used:
        raise ValueError(f"{target.name}/{layer.name}: {source_keys[key].name} already copied to another "
                         "target (the targets overlap)")
      values = source_keys[key].get_weights()
      shapes = [w.shape for w in layer.weights]
      if [v.shape for v in values] != shapes:
        raise ValueError(f"{source.name}/{source_keys[key].name} -> {target.name}/{layer.name}: weight "
                         f"shapes {[v.shape for v in values]} != {shapes}")
      layer.set_weights(values)
      used.add(key)
      copied_layers += 1
      copied_values += sum(v.size for v in values)
  unused = [layer.name for key, layer in source_keys.items() if key not in used]
  unused += [l.name for l in source.layers if l.weights and not isinstance(l, _WEIGHT_LAYERS)]
  return CopyReport(copied_layers, copied_values, unused)


def _has_top(h5_path: str) -> bool:
  import h5py  # pylint: disable=import-outside-toplevel
  with h5py.File(h5_path, "r") as f:
    names = f.attrs["layer_names"] if "layer_names" in f.attrs else f["model_weights"].attrs["layer_names"]
    return any(name in (b"predictions", "predictions") for name in names)


def load_inception_resnet_v2_h5(h5_path: str, targets: Sequence[tf_keras.Model]) -> CopyReport:
  """Loads a Keras Applications `InceptionResNetV2` weights file (with or without top) into `targets`.

  The file's own model is rebuilt (random init, then the file loaded as Keras does) to read its structure.
  The classifier layer of a with-top file is reported as unused.
  """
  include_top = _has_top(h5_path)
  source = tf_keras.applications.InceptionResNetV2(
      include_top=include_top, weights=None, input_shape=None if include_top else (None, None, 3))
  source.load_weights(h5_path)
  return copy_weights(source, targets)
