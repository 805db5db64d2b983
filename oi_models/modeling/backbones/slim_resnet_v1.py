"""ResNet-v1 in TF-slim's layout (`resnet_v1_50/101/152`), so slim checkpoints load and give slim's outputs.

The released Open Images classifier (`oidv2-resnet_v1_101.ckpt`) is slim's `resnet_v1_101`. Its layout
differs from Model Garden's `resnet` backbone in ways that change every activation, so its weights do not
fit there:

* the stride of a block sits on its LAST unit (Model Garden strides the first); block4 has stride 1, so
  block1 ends at stride 8, block2 at 16, block3 and block4 at 32;
* a strided 3x3 (and the 7x7 stem) pads explicitly, `(k - 1) // 2` before and the rest after, then
  convolves VALID (slim's `conv2d_same`): for even inputs this is not Keras' 'same';
* the shortcut of a unit whose input already has the output depth is the input itself, subsampled
  (`x[:, ::stride, ::stride]`, slim's 1x1 max-pool) on the strided unit; a projection (1x1 conv + batch
  norm) only where the depth changes, i.e. the first unit of each block;
* batch norm follows every convolution (no conv biases), decay 0.997 and epsilon 1e-5 by
  `resnet_arg_scope`; its `batch_norm_scale` decides whether a gamma exists;
* the stem max-pool is 3x3 stride 2 with SAME padding.

Input: slim's VGG preprocessing subtracts the channel means (123.68, 116.78, 103.94) from RGB in [0, 255]
and does not divide; that is the default input (`input_normalization='vgg'`, what this package's
classifier input gives with `preprocessing: vgg`). With 'model_garden' the first layer maps Model
Garden's `(x - MEAN_RGB) / STDDEV_RGB` (its stock pipelines and serving modules) back to slim's input
exactly, so a converted checkpoint also works behind those.

Endpoints: level L holds the last feature map computed at stride 2^L ('2': block1's next-to-last unit,
'3': block2's, '4': block3's, '5': block4's output), so classifiers pool level '5' as slim does.
"""

import math
from typing import Dict, Optional, Sequence, Tuple

import tf_keras
from official.modeling import hyperparams
from official.vision.modeling.backbones import factory
from official.vision.ops import preprocess_ops

layers = tf_keras.layers

# Units per block of slim's resnet_v1_<model_id>; base (bottleneck) depths are 64, 128, 256, 512.
SLIM_RESNET_V1_BLOCKS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
BASE_DEPTHS = (64, 128, 256, 512)
BLOCK_STRIDES = (2, 2, 2, 1)
STEM_DEPTH = 64
# TF-slim's vgg_preprocessing channel means (RGB, pixel values in [0, 255]).
VGG_MEAN_RGB = (123.68, 116.78, 103.94)
INPUT_NORMALIZATIONS = ("vgg", "model_garden")


def unit_scope(block: int, unit: int) -> str:
  """Slim's variable scope of a bottleneck unit (1-based numbers), below the model scope."""
  return f"block{block}/unit_{unit}/bottleneck_v1"


@tf_keras.utils.register_keras_serializable(package="oi_models")
class SlimResNetV1(tf_keras.Model):
  """ResNet-v1 with slim's strides, padding, shortcuts and variable structure.

  `slim_layers` maps each slim scope below the model scope (`conv1`,
  `block1/unit_1/bottleneck_v1/shortcut`, ...) to its (Conv2D, BatchNormalization) pair: the one
  place where slim names meet this model's layers, used by the checkpoint converter.
  """

  def __init__(
      self,
      model_id: int = 101,
      input_specs: layers.InputSpec = layers.InputSpec(shape=[None, None, None, 3]),
      block_repeats: Sequence[int] = (),
      depth_multiplier: float = 1.0,
      batch_norm_scale: bool = True,
      input_normalization: str = "vgg",
      activation: str = "relu",
      use_sync_bn: bool = False,
      norm_momentum: float = 0.997,
      norm_epsilon: float = 1e-5,
      kernel_initializer: str = "VarianceScaling",
      kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
      bn_trainable: bool = True,
      **kwargs):
    """Args:

      model_id: 50, 101 or 152: the units per block of slim's `resnet_v1_<model_id>`.
      input_specs: the input's `InputSpec` (channels last).
      block_repeats: units per block (four numbers) in place of `model_id`'s, for small test models.
      depth_multiplier: scales the bottleneck depths 64..512 (block outputs are 4x those) as research
        slim's `resnet_v1` does; the stem keeps 64.
      batch_norm_scale: batch norm with a gamma (tf-slim's `resnet_arg_scope` default); checkpoints
        saved without one need False.
      input_normalization: 'vgg' (input is `x - VGG_MEAN_RGB`, slim's vgg_preprocessing) or
        'model_garden' (input is `(x - MEAN_RGB) / STDDEV_RGB`, as Model Garden's stock pipelines give).
      activation, use_sync_bn, norm_momentum, norm_epsilon, kernel_initializer, kernel_regularizer,
        bn_trainable: as Model Garden's ResNet; momentum and epsilon default to slim's.
      **kwargs: passed to `tf_keras.Model`.
    """
    repeats = tuple(block_repeats) or SLIM_RESNET_V1_BLOCKS.get(model_id)
    if repeats is None:
      raise ValueError(f"slim_resnet_v1: model_id must be one of {sorted(SLIM_RESNET_V1_BLOCKS)} "
                       f"(or give block_repeats), got {model_id}")
    if len(repeats) != 4 or min(repeats) < 1:
      raise ValueError(f"slim_resnet_v1: block_repeats must be 4 positive numbers, got {repeats}")
    if input_normalization not in INPUT_NORMALIZATIONS:
      raise ValueError(f"slim_resnet_v1: input_normalization must be one of {INPUT_NORMALIZATIONS}, "
                       f"got {input_normalization!r}")
    self._config_dict = {
        "model_id": model_id, "input_specs": input_specs, "block_repeats": tuple(block_repeats),
        "depth_multiplier": depth_multiplier, "batch_norm_scale": batch_norm_scale,
        "input_normalization": input_normalization, "activation": activation,
        "use_sync_bn": use_sync_bn, "norm_momentum": norm_momentum, "norm_epsilon": norm_epsilon,
        "kernel_initializer": kernel_initializer, "kernel_regularizer": kernel_regularizer,
        "bn_trainable": bn_trainable,
    }
    self._activation = activation
    slim_layers: Dict[str, Tuple[layers.Conv2D, layers.BatchNormalization]] = {}

    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = inputs
    if input_normalization == "model_garden":
      x = layers.Rescaling(  # (x - MEAN_RGB) / STDDEV_RGB  ->  x - VGG_MEAN_RGB
          scale=list(preprocess_ops.STDDEV_RGB),
          offset=[m - v for m, v in zip(preprocess_ops.MEAN_RGB, VGG_MEAN_RGB)],
          name="to_vgg_input")(x)

    def depth(d):
      return max(int(d * depth_multiplier), 1)

    def conv_bn(x, scope, filters, kernel_size, stride=1, relu=True):
      """slim's conv2d + batch_norm (+ relu); strided kernels > 1 pad as `conv2d_same`."""
      name = scope.replace("/", "_")
      padding = "same"
      if stride > 1 and kernel_size > 1:
        before = (kernel_size - 1) // 2
        x = layers.ZeroPadding2D(((before, kernel_size - 1 - before),) * 2, name=name + "_pad")(x)
        padding = "valid"
      conv = layers.Conv2D(filters, kernel_size, strides=stride, padding=padding, use_bias=False,
                           kernel_initializer=kernel_initializer,
                           kernel_regularizer=kernel_regularizer, name=name)
      bn = layers.BatchNormalization(momentum=norm_momentum, epsilon=norm_epsilon,
                                     scale=batch_norm_scale, synchronized=use_sync_bn,
                                     trainable=bn_trainable, name=name + "_bn")
      slim_layers[scope] = (conv, bn)
      x = bn(conv(x))
      return layers.Activation(activation, name=name + "_relu")(x) if relu else x

    endpoints = {}
    x = conv_bn(x, "conv1", STEM_DEPTH, 7, stride=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    stride = 4
    endpoints[str(int(math.log2(stride)))] = x
    for block, (num_units, base, block_stride) in enumerate(
        zip(repeats, BASE_DEPTHS, BLOCK_STRIDES), start=1):
      for unit in range(1, num_units + 1):
        unit_stride = block_stride if unit == num_units else 1
        x = self._bottleneck(x, unit_scope(block, unit), depth(base), unit_stride, conv_bn)
        stride *= unit_stride
        endpoints[str(int(math.log2(stride)))] = x
    self._output_specs = {level: feature.get_shape() for level, feature in endpoints.items()}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)
    self.slim_layers = slim_layers

  def _bottleneck(self, x, scope, base_depth, stride, conv_bn):
    """slim's `bottleneck` (v1): 1x1 -> 3x3 (strided) -> 1x1, batch norm after each, relu(sum)."""
    out_depth = 4 * base_depth
    name = scope.replace("/", "_")
    if x.shape[-1] == out_depth:
      shortcut = x if stride == 1 else layers.MaxPooling2D(
          1, strides=stride, padding="same", name=name + "_subsample")(x)
    else:
      shortcut = conv_bn(x, scope + "/shortcut", out_depth, 1, stride=stride, relu=False)
    residual = conv_bn(x, scope + "/conv1", base_depth, 1)
    residual = conv_bn(residual, scope + "/conv2", base_depth, 3, stride=stride)
    residual = conv_bn(residual, scope + "/conv3", out_depth, 1, relu=False)
    x = layers.Add(name=name + "_add")([shortcut, residual])
    return layers.Activation(self._activation, name=name + "_out")(x)

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

  @property
  def output_specs(self):
    """{level: TensorShape} of the endpoints."""
    return self._output_specs


@factory.register_backbone_builder("slim_resnet_v1")
def build_slim_resnet_v1(
    input_specs: layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None) -> tf_keras.Model:
  """Builds `SlimResNetV1` from `oi_models.configs.backbones.SlimResNetV1`.

  Batch-norm momentum and epsilon come from the backbone config (slim's 0.997 and 1e-5 by default, part
  of what a slim checkpoint was trained with), not from `norm_activation`, whose defaults (0.99, 1e-3)
  would change a converted model's outputs; activation and synchronized batch norm come from it.
  """
  assert backbone_config.type == "slim_resnet_v1", f"Inconsistent backbone type {backbone_config.type}"
  cfg = backbone_config.get()
  return SlimResNetV1(
      model_id=cfg.model_id,
      input_specs=input_specs,
      block_repeats=tuple(cfg.block_repeats or ()),
      depth_multiplier=cfg.depth_multiplier,
      batch_norm_scale=cfg.batch_norm_scale,
      input_normalization=cfg.input_normalization,
      activation=norm_activation_config.activation,
      use_sync_bn=norm_activation_config.use_sync_bn,
      norm_momentum=cfg.norm_momentum,
      norm_epsilon=cfg.norm_epsilon,
      kernel_regularizer=l2_regularizer,
      bn_trainable=cfg.bn_trainable)
