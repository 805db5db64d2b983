"""Inception-ResNet-v2 (Szegedy et al. 2016) as a Model Garden backbone, in the two pieces Faster R-CNN uses.

The TF Object Detection API's Faster R-CNN splits the network in two: the *first stage* (stem, mixed_5b,
the block35 repeats, mixed_6a and the block17 repeats; 1088 channels) computes the RPN features once per
image, and the *tail* (mixed_7a, the block8 repeats, a final block8 without activation and conv_7b; 1536
channels) runs on every 17x17 crop in the second stage. `InceptionResNetV2` is the registered backbone:
at output stride 8 or 16 it is the first stage, at 32 it is first stage + tail, the classification
network. `InceptionResNetV2Tail` is the tail alone, for a second-stage head.

Options, as the two reference implementations build the network:
- output_stride 8: mixed_6a at stride 1 and every block17 convolution at atrous rate 2 (the OD API's
  `first_stage_features_stride: 8`); 16: mixed_6a at stride 2; 32: the whole network.
- padding 'SAME' turns every VALID convolution and pooling of the stem, mixed_6a and mixed_7a into SAME,
  so feature maps align with the image (slim's `align_feature_maps=True`, the OD API's first stage);
  'VALID' is Keras Applications' and slim's classification network. The OD API's second stage builds
  mixed_7a with VALID padding whatever the first stage does, so a 17x17 crop gives 8x8 features: the
  tail's own padding defaults to 'VALID'.
- block35 / block17 / block8 repeats (10 / 20 / 9 in the published network) shrink for tiny configs.
- depth_multiplier scales every convolution's output channels (`max(int(d * multiplier), 8)`, as slim's
  `depth_multiplier` with a floor), for tiny configs that must train on a CPU in minutes; 1.0 (the
  published network, what the converters map) by default.
- batch norm: trained as usual by default; bn_inference_mode=True normalizes with the moving statistics
  in training too while beta still learns, which is what the OD API's Faster R-CNN does with its default
  `batch_norm_trainable: false` (slim's batch norm with is_training=False keeps its beta trainable);
  bn_trainable=False freezes it whole (not trainable, and a non-trainable tf_keras batch norm always
  uses its moving statistics).

Facts shared by slim and Keras Applications: convolutions without bias followed by batch norm without
scale (gamma) and ReLU; epsilon 0.001; each residual block ends with a linear 1x1 convolution with bias
(no batch norm), scaled by 0.17 (block35), 0.10 (block17) or 0.20 (block8) and added to its input, then
ReLU (none after the final block8, whose scale is 1).

Layer names are Keras Applications' where it names layers (`mixed_5b`, `block35_1_mixed`, `block35_1_conv`,
`block35_1`, `block35_1_ac`, ..., `block8_10`, `conv_7b`, `conv_7b_bn`, `conv_7b_ac`); the layers it
leaves unnamed (`conv2d_N`) are named after their TF-slim scope (`conv2d_1a_3x3`,
`block35_1_branch_2_conv2d_0c_3x3`, ...). Every weight layer records its slim scope in `slim_scopes`, from
which converters/slim_inception_resnet_v2.py maps slim and OD API checkpoints.
"""

from __future__ import annotations

from typing import Any

import tf_keras
from official.modeling import hyperparams
from official.vision.modeling.backbones import factory

FIRST_STAGE_CHANNELS = 1088
TAIL_CHANNELS = 1536
PAPER_REPEATS = {"block35": 10, "block17": 20, "block8": 9}
_SCALES = {"block35": 0.17, "block17": 0.10, "block8": 0.20}
# slim.repeat's variable scopes, numbered in creation order within one InceptionResnetV2 scope.
SLIM_REPEAT_SCOPES = {"block35": "Repeat", "block17": "Repeat_1", "block8": "Repeat_2"}
_LEVELS = {8: "3", 16: "4", 32: "5"}
_MIN_DEPTH = 8


def scaled_depth(depth: int, depth_multiplier: float = 1.0) -> int:
  """Channels of a convolution of published depth `depth` under `depth_multiplier`."""
  return depth if depth_multiplier == 1.0 else max(int(depth * depth_multiplier), _MIN_DEPTH)


def first_stage_channels(depth_multiplier: float = 1.0) -> int:
  """Channels of the first stage's output (mixed_6a: two 384 branches and mixed_5b's 96+64+96+64)."""
  return sum(scaled_depth(d, depth_multiplier) for d in (384, 384, 96, 64, 96, 64))


@tf_keras.utils.register_keras_serializable(package="oi_models")
class ScaledResidual(tf_keras.layers.Layer):
  """`inputs[0] + scale * inputs[1]`: the sum that closes every Inception-ResNet block."""

  def __init__(self, scale: float, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale

  def call(self, inputs):
    shortcut, residual = inputs
    return shortcut + residual * self.scale

  def get_config(self):
    return dict(super().get_config(), scale=self.scale)


@tf_keras.utils.register_keras_serializable(package="oi_models")
class InferenceBatchNormalization(tf_keras.layers.BatchNormalization):
  """Batch norm that always normalizes with its moving statistics; beta (and gamma) stay trainable."""

  def call(self, inputs, training=None):
    del training  # the point of the layer
    return super().call(inputs, training=False)


class _Builder:
  """Creates the layers of one network piece on a tensor and records each weight layer's slim scope."""

  def __init__(self, padding: str, bn_trainable: bool, bn_inference_mode: bool, use_sync_bn: bool,
               norm_momentum: float, norm_epsilon: float, activation: str, kernel_initializer: Any,
               kernel_regularizer: Any, bias_regularizer: Any, depth_multiplier: float = 1.0):
    if depth_multiplier <= 0:
      raise ValueError(f"depth_multiplier must be positive, got {depth_multiplier}")
    self._depth_multiplier = depth_multiplier
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    self.padding = padding.lower()
    self._bn = dict(momentum=norm_momentum, epsilon=norm_epsilon, scale=False, center=True,
                    synchronized=use_sync_bn, trainable=bn_trainable)
    self._norm = (InferenceBatchNormalization if bn_inference_mode
                  else tf_keras.layers.BatchNormalization)
    self._conv = dict(kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
                      bias_regularizer=bias_regularizer)
    self._activation = activation
    self.slim_scopes: dict[str, str] = {}

  def conv_bn(self, x, filters, kernel_size, name, scope, strides=1, padding="same", dilation_rate=1):
    """Convolution without bias, batch norm without gamma, activation: slim's conv2d under its arg_scope."""
    filters = scaled_depth(filters, self._depth_multiplier)
    x = tf_keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               dilation_rate=dilation_rate, use_bias=False, name=name, **self._conv)(x)
    x = self._norm(name=name + "_bn", **self._bn)(x)
    self.slim_scopes[name] = scope
    self.slim_scopes[name + "_bn"] = scope + "/BatchNorm"
    return tf_keras.layers.Activation(self._activation, name=name + "_ac")(x)

  def _branch_conv(self, x, block, branch, conv, filters, kernel_size, **kwargs):
    """A branch convolution; `block` is (layer-name prefix, slim scope), `conv` slim's name for it."""
    prefix, scope = block
    return self.conv_bn(x, filters, kernel_size, f"{prefix}_branch_{branch}_{conv.lower()}",
                        f"{scope}/Branch_{branch}/{conv}", **kwargs)

  def stem(self, x):
    """149x149x32 ... 35x35x192 at a 299x299 VALID input (slim's Conv2d_1a_3x3 to MaxPool_5a_3x3)."""
    pad = self.padding
    x = self.conv_bn(x, 32, 3, "conv2d_1a_3x3", "Conv2d_1a_3x3", strides=2, padding=pad)
    x = self.conv_bn(x, 32, 3, "conv2d_2a_3x3", "Conv2d_2a_3x3", padding=pad)
    x = self.conv_bn(x, 64, 3, "conv2d_2b_3x3", "Conv2d_2b_3x3")
    x = tf_keras.layers.MaxPooling2D(3, strides=2, padding=pad, name="maxpool_3a_3x3")(x)
    x = self.conv_bn(x, 80, 1, "conv2d_3b_1x1", "Conv2d_3b_1x1", padding=pad)
    x = self.conv_bn(x, 192, 3, "conv2d_4a_3x3", "Conv2d_4a_3x3", padding=pad)
    return tf_keras.layers.MaxPooling2D(3, strides=2, padding=pad, name="maxpool_5a_3x3")(x)

  def mixed_5b(self, x):
    """Inception-A: 35x35x320."""
    block = ("mixed_5b", "Mixed_5b")
    branch_0 = self._branch_conv(x, block, 0, "Conv2d_1x1", 96, 1)
    branch_1 = self._branch_conv(x, block, 1, "Conv2d_0a_1x1", 48, 1)
    branch_1 = self._branch_conv(branch_1, block, 1, "Conv2d_0b_5x5", 64, 5)
    branch_2 = self._branch_conv(x, block, 2, "Conv2d_0a_1x1", 64, 1)
    branch_2 = self._branch_conv(branch_2, block, 2, "Conv2d_0b_3x3", 96, 3)
    branch_2 = self._branch_conv(branch_2, block, 2, "Conv2d_0c_3x3", 96, 3)
    branch_3 = tf_keras.layers.AveragePooling2D(3, strides=1, padding="same",
                                                name="mixed_5b_branch_3_avgpool_0a_3x3")(x)
    branch_3 = self._branch_conv(branch_3, block, 3, "Conv2d_0b_1x1", 64, 1)
    return tf_keras.layers.Concatenate(name="mixed_5b")([branch_0, branch_1, branch_2, branch_3])

  def mixed_6a(self, x, strides):
    """Reduction-A: 17x17x1088 at stride 2 (output stride 16), stride 1 for output stride 8."""
    block, pad = ("mixed_6a", "Mixed_6a"), self.padding
    branch_0 = self._branch_conv(x, block, 0, "Conv2d_1a_3x3", 384, 3, strides=strides, padding=pad)
    branch_1 = self._branch_conv(x, block, 1, "Conv2d_0a_1x1", 256, 1)
    branch_1 = self._branch_conv(branch_1, block, 1, "Conv2d_0b_3x3", 256, 3)
    branch_1 = self._branch_conv(branch_1, block, 1, "Conv2d_1a_3x3", 384, 3, strides=strides,
                                 padding=pad)
    branch_2 = tf_keras.layers.MaxPooling2D(3, strides=strides, padding=pad,
                                            name="mixed_6a_branch_2_maxpool_1a_3x3")(x)
    return tf_keras.layers.Concatenate(name="mixed_6a")([branch_0, branch_1, branch_2])

  def mixed_7a(self, x):
    """Reduction-B: 8x8x2080 from 17x17 (VALID)."""
    block, pad = ("mixed_7a", "Mixed_7a"), self.padding
    branch_0 = self._branch_conv(x, block, 0, "Conv2d_0a_1x1", 256, 1)
    branch_0 = self._branch_conv(branch_0, block, 0, "Conv2d_1a_3x3", 384, 3, strides=2, padding=pad)
    branch_1 = self._branch_conv(x, block, 1, "Conv2d_0a_1x1", 256, 1)
    branch_1 = self._branch_conv(branch_1, block, 1, "Conv2d_1a_3x3", 288, 3, strides=2, padding=pad)
    branch_2 = self._branch_conv(x, block, 2, "Conv2d_0a_1x1", 256, 1)
    branch_2 = self._branch_conv(branch_2, block, 2, "Conv2d_0b_3x3", 288, 3)
    branch_2 = self._branch_conv(branch_2, block, 2, "Conv2d_1a_3x3", 320, 3, strides=2, padding=pad)
    branch_3 = tf_keras.layers.MaxPooling2D(3, strides=2, padding=pad,
                                            name="mixed_7a_branch_3_maxpool_1a_3x3")(x)
    return tf_keras.layers.Concatenate(name="mixed_7a")([branch_0, branch_1, branch_2, branch_3])

  def residual_block(self, x, kind, index, scope, scale, activation=True, dilation_rate=1):
    """Inception-ResNet-A/B/C (`kind` block35/block17/block8): x + scale * conv1x1(concat(branches))."""
    name = f"{kind}_{index}"
    block = (name, scope)

    def conv(t, branch, conv_name, filters, size):
      return self._branch_conv(t, block, branch, conv_name, filters, size, dilation_rate=dilation_rate)

    if kind == "block35":
      branches = [conv(x, 0, "Conv2d_1x1", 32, 1),
                  conv(conv(x, 1, "Conv2d_0a_1x1", 32, 1), 1, "Conv2d_0b_3x3", 32, 3),
                  conv(conv(conv(x, 2, "Conv2d_0a_1x1", 32, 1), 2, "Conv2d_0b_3x3", 48, 3),
                       2, "Conv2d_0c_3x3", 64, 3)]
    elif kind == "block17":
      branches = [conv(x, 0, "Conv2d_1x1", 192, 1),
                  conv(conv(conv(x, 1, "Conv2d_0a_1x1", 128, 1), 1, "Conv2d_0b_1x7", 160, (1, 7)),
                       1, "Conv2d_0c_7x1", 192, (7, 1))]
    else:
      branches = [conv(x, 0, "Conv2d_1x1", 192, 1),
                  conv(conv(conv(x, 1, "Conv2d_0a_1x1", 192, 1), 1, "Conv2d_0b_1x3", 224, (1, 3)),
                       1, "Conv2d_0c_3x1", 256, (3, 1))]
    mixed = tf_keras.layers.Concatenate(name=name + "_mixed")(branches)
    up = tf_keras.layers.Conv2D(x.shape[-1], 1, use_bias=True, name=name + "_conv", **self._conv)(mixed)
    self.slim_scopes[name + "_conv"] = scope + "/Conv2d_1x1"
    x = ScaledResidual(scale, name=name)([x, up])
    if activation:
      x = tf_keras.layers.Activation(self._activation, name=name + "_ac")(x)
    return x

  def repeat(self, x, kind, repeats, dilation_rate=1):
    for index in range(1, repeats + 1):
      x = self.residual_block(x, kind, index, f"{SLIM_REPEAT_SCOPES[kind]}/{kind}_{index}",
                              _SCALES[kind], dilation_rate=dilation_rate)
    return x

  def first_stage(self, x, output_stride, block35_repeats, block17_repeats):
    """Stem to the last block17: [B, H/8 or H/16, ., 1088] (slim's PreAuxLogits end point)."""
    atrous = output_stride == 8
    x = self.repeat(self.mixed_5b(self.stem(x)), "block35", block35_repeats)
    x = self.mixed_6a(x, strides=1 if atrous else 2)
    return self.repeat(x, "block17", block17_repeats, dilation_rate=2 if atrous else 1)

  def tail(self, x, block8_repeats):
    """mixed_7a, the block8 repeats, the final linear block8, conv_7b: [., ., ., 1536]."""
    x = self.repeat(self.mixed_7a(x), "block8", block8_repeats)
    x = self.residual_block(x, "block8", block8_repeats + 1, "Block8", 1.0, activation=False)
    return self.conv_bn(x, TAIL_CHANNELS, 1, "conv_7b", "Conv2d_7b_1x1")


def _builder_config(padding, bn_trainable, bn_inference_mode, use_sync_bn, norm_momentum, norm_epsilon,
                    activation, kernel_initializer, kernel_regularizer, bias_regularizer,
                    depth_multiplier) -> dict[str, Any]:
  """The _Builder arguments, which are also part of each model's config."""
  return dict(depth_multiplier=depth_multiplier, padding=padding, bn_trainable=bn_trainable, bn_inference_mode=bn_inference_mode,
              use_sync_bn=use_sync_bn, norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
              activation=activation, kernel_initializer=kernel_initializer,
              kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)


@tf_keras.utils.register_keras_serializable(package="oi_models")
class InceptionResNetV2(tf_keras.Model):
  """The registered backbone: the first stage at output stride 8 / 16, the whole network at 32.

  Returns one level only, `{str(log2(output_stride)): features}` ('3', '4' or '5'), since Model Garden's
  ROI aligner pools from every level a backbone returns.
  """

  def __init__(self,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, 3]),
               output_stride: int = 8,
               padding: str = "SAME",
               block35_repeats: int = PAPER_REPEATS["block35"],
               block17_repeats: int = PAPER_REPEATS["block17"],
               block8_repeats: int = PAPER_REPEATS["block8"],
               bn_trainable: bool = True,
               bn_inference_mode: bool = False,
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               activation: str = "relu",
               kernel_initializer: Any = "glorot_uniform",
               kernel_regularizer: tf_keras.regularizers.Regularizer | None = None,
               bias_regularizer: tf_keras.regularizers.Regularizer | None = None,
               depth_multiplier: float = 1.0,
               **kwargs):
    if output_stride not in _LEVELS:
      raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    layer_config = _builder_config(padding, bn_trainable, bn_inference_mode, use_sync_bn, norm_momentum,
                                   norm_epsilon, activation, kernel_initializer, kernel_regularizer,
                                   bias_regularizer, depth_multiplier)
    builder = _Builder(**layer_config)
    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = builder.first_stage(inputs, output_stride, block35_repeats, block17_repeats)
    if output_stride == 32:
      x = builder.tail(x, block8_repeats)
    endpoints = {_LEVELS[output_stride]: x}
    self._config_dict = dict(layer_config, output_stride=output_stride,
                             block35_repeats=block35_repeats, block17_repeats=block17_repeats,
                             block8_repeats=block8_repeats)
    self._slim_scopes = tuple(builder.slim_scopes.items())
    self._output_specs = {level: tensor.get_shape() for level, tensor in endpoints.items()}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  @property
  def slim_scopes(self) -> dict[str, str]:
    """{weight layer name: its TF-slim scope under `InceptionResnetV2/`}."""
    return dict(self._slim_scopes)

  @property
  def output_specs(self):
    """A dict of {level: TensorShape} pairs for the model output."""
    return self._output_specs

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


@tf_keras.utils.register_keras_serializable(package="oi_models")
class InceptionResNetV2Tail(tf_keras.Model):
  """The tail (mixed_7a ... conv_7b) on first-stage features: [N, h, w, 1088] -> [N, h', w', 1536].

  The OD API's second stage runs it on each 17x17 crop with VALID mixed_7a (8x8 out), the default here.
  """

  def __init__(self,
               padding: str = "VALID",
               block8_repeats: int = PAPER_REPEATS["block8"],
               bn_trainable: bool = True,
               bn_inference_mode: bool = False,
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               activation: str = "relu",
               kernel_initializer: Any = "glorot_uniform",
               kernel_regularizer: tf_keras.regularizers.Regularizer | None = None,
               bias_regularizer: tf_keras.regularizers.Regularizer | None = None,
               depth_multiplier: float = 1.0,
               **kwargs):
    layer_config = _builder_config(padding, bn_trainable, bn_inference_mode, use_sync_bn, norm_momentum,
                                   norm_epsilon, activation, kernel_initializer, kernel_regularizer,
                                   bias_regularizer, depth_multiplier)
    builder = _Builder(**layer_config)
    inputs = tf_keras.Input(shape=[None, None, first_stage_channels(depth_multiplier)])
    outputs = builder.tail(inputs, block8_repeats)
    self._config_dict = dict(layer_config, block8_repeats=block8_repeats)
    self._slim_scopes = tuple(builder.slim_scopes.items())
    kwargs.setdefault("name", "inception_resnet_v2_tail")
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)

  @property
  def slim_scopes(self) -> dict[str, str]:
    """{weight layer name: its TF-slim scope under `InceptionResnetV2/`}."""
    return dict(self._slim_scopes)

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def _norm_kwargs(norm_activation_config: hyperparams.Config) -> dict[str, Any]:
  return dict(use_sync_bn=norm_activation_config.use_sync_bn,
              norm_momentum=norm_activation_config.norm_momentum,
              norm_epsilon=norm_activation_config.norm_epsilon,
              activation=norm_activation_config.activation)


@factory.register_backbone_builder("inception_resnet_v2")
def build_inception_resnet_v2(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: tf_keras.regularizers.Regularizer | None = None) -> tf_keras.Model:
  """Builds the `inception_resnet_v2` backbone (oi_models.configs.backbones.InceptionResNetV2)."""
  assert backbone_config.type == "inception_resnet_v2", backbone_config.type
  cfg = backbone_config.get()
  return InceptionResNetV2(
      input_specs=input_specs, output_stride=cfg.output_stride, padding=cfg.padding,
      block35_repeats=cfg.block35_repeats, block17_repeats=cfg.block17_repeats,
      block8_repeats=cfg.block8_repeats, bn_trainable=cfg.bn_trainable,
      bn_inference_mode=cfg.bn_inference_mode, depth_multiplier=cfg.depth_multiplier,
      kernel_regularizer=l2_regularizer, **_norm_kwargs(norm_activation_config))


def build_inception_resnet_v2_tail(
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: tf_keras.regularizers.Regularizer | None = None,
    padding: str = "VALID") -> InceptionResNetV2Tail:
  """The second-stage tail matching a first-stage backbone config (its block8 repeats, batch norm)."""
  cfg = backbone_config.get()
  return InceptionResNetV2Tail(padding=padding, block8_repeats=cfg.block8_repeats,
                               bn_trainable=cfg.bn_trainable, bn_inference_mode=cfg.bn_inference_mode,
                               depth_multiplier=cfg.depth_multiplier, kernel_regularizer=l2_regularizer,
                               **_norm_kwargs(norm_activation_config))
