"""Inception-ResNet-v2 backbone: structure, shapes, options, factory registration (tiny 1/1/1 configs).

Numerical parity is tested against the field's code: Keras Applications' model in
tests/modeling/converters/test_keras_applications.py, TF-slim and the OD API in
tests/modeling/converters/test_slim_inception_resnet_v2.py.
"""

import numpy as np
import pytest
import tf_keras
from official.vision.configs import common
from official.vision.modeling.backbones import factory

from oi_models.configs import backbones as backbone_configs
from oi_models.modeling.backbones import inception_resnet_v2 as irv2

TINY = dict(block35_repeats=1, block17_repeats=1, block8_repeats=1)
TINY_REPEATS = {"block35": 1, "block17": 1, "block8": 1}


def tiny_backbone(**kwargs) -> irv2.InceptionResNetV2:
  return irv2.InceptionResNetV2(**dict(TINY, **kwargs))


def conv_bn_counts(repeats: dict) -> tuple[int, int]:
  """(convolutions with batch norm, linear 1x1 convolutions with bias) of the network, counted by hand.

  Stem 5, mixed_5b 7, mixed_6a 4, mixed_7a 7, conv_7b 1 with batch norm; each block35 has 6 branch
  convolutions, each block17 / block8 4, and each block one linear 1x1 with bias; the final block8 is one
  more block8.
  """
  with_bn = (5 + 7 + 4 + 7 + 1 + 6 * repeats["block35"] + 4 * repeats["block17"]
             + 4 * (repeats["block8"] + 1))
  linear = repeats["block35"] + repeats["block17"] + repeats["block8"] + 1
  return with_bn, linear


@pytest.fixture(scope="module")
def whole():
  """The tiny stride-32 network, VALID padding (Keras Applications' layout)."""
  return tiny_backbone(output_stride=32, padding="VALID")


def test_weight_counts_match_the_hand_count(whole):
  with_bn, linear = conv_bn_counts(TINY_REPEATS)
  # Trainable: every kernel, the linear convolutions' biases, each batch norm's beta (no gamma).
  assert len(whole.trainable_weights) == with_bn + 2 * linear + with_bn
  assert len(whole.non_trainable_weights) == 2 * with_bn  # moving mean and variance
  assert sum(isinstance(l, tf_keras.layers.Conv2D) for l in whole.layers) == with_bn + linear


@pytest.mark.parametrize("output_stride,padding,size,expected", [
    (8, "SAME", (96, 130), (12, 17)),     # SAME: ceil(size / stride)
    (32, "SAME", (96, 130), (3, 5)),
    (8, "VALID", (107, 139), (9, 13)),    # VALID: the 35x35 grid of a 299 input is 11x15 here, and
    (16, "VALID", (107, 139), (5, 7)),    # a stride-1 VALID mixed_6a takes 2 off
])
def test_output_one_level_with_expected_shape(output_stride, padding, size, expected):
  model = tiny_backbone(output_stride=output_stride, padding=padding)
  level = {8: "3", 16: "4", 32: "5"}[output_stride]
  features = model(np.zeros((2, *size, 3), np.float32))
  assert list(features) == [level]  # one level: Model Garden's ROI aligner pools from every level
  channels = irv2.TAIL_CHANNELS if output_stride == 32 else irv2.FIRST_STAGE_CHANNELS
  assert features[level].shape == (2, *expected, channels)
  assert model.output_specs[level].as_list() == [None, None, None, channels]


def test_atrous_rate_only_in_the_block17_stage_at_stride_8():
  """Slim applies rate 2 to every block17 convolution; only those wider than 1x1 see it."""
  for output_stride, rate in ((8, 2), (16, 1)):
    model = irv2.InceptionResNetV2(output_stride=output_stride, block35_repeats=1, block17_repeats=2)
    rates = {l.name: l.dilation_rate for l in model.layers
             if isinstance(l, tf_keras.layers.Conv2D) and l.kernel_size != (1, 1)}
    assert all(rates[name] == (rate, rate) for name in rates if name.startswith("block17_"))
    assert all(rates[name] == (1, 1) for name in rates if not name.startswith("block17_"))
    strides = model.get_layer("mixed_6a_branch_0_conv2d_1a_3x3").strides
    assert strides == ((1, 1) if output_stride == 8 else (2, 2))


@pytest.mark.parametrize("padding,expected", [("VALID", 8), ("SAME", 9)])
def test_tail_on_17x17_crops(padding, expected):
  tail = irv2.InceptionResNetV2Tail(padding=padding, block8_repeats=1)
  out = tail(np.zeros((3, 17, 17, irv2.FIRST_STAGE_CHANNELS), np.float32))
  assert out.shape == (3, expected, expected, irv2.TAIL_CHANNELS)


def test_first_stage_and_tail_compose_to_the_whole_network(whole):
  """The stride-16 first stage then the tail, with the same weights, is the stride-32 network."""
  first = tiny_backbone(output_stride=16, padding="VALID")
  tail = irv2.InceptionResNetV2Tail(padding="VALID", block8_repeats=1)
  for model in (first, tail):
    for layer in model.layers:
      if layer.weights:
        layer.set_weights(whole.get_layer(layer.name).get_weights())
  image = np.random.default_rng(0).uniform(-1, 1, (1, 107, 139, 3)).astype(np.float32)
  np.testing.assert_allclose(tail(first(image)["4"]), whole(image)["5"], rtol=1e-5, atol=1e-5)


def test_keras_applications_names_where_it_names_layers(whole):
  model = whole
  names = {l.name for l in model.layers}
  assert {"mixed_5b", "block35_1_mixed", "block35_1_conv", "block35_1", "block35_1_ac", "mixed_6a",
          "block17_1_mixed", "block17_1_ac", "mixed_7a", "block8_1_ac", "block8_2_mixed", "block8_2_conv",
          "block8_2", "conv_7b", "conv_7b_bn", "conv_7b_ac"} <= names
  assert "block8_2_ac" not in names  # the final block8 has no activation
  assert isinstance(model.get_layer("block8_2"), irv2.ScaledResidual)
  assert model.get_layer("block8_2").scale == 1.0
  assert [model.get_layer(f"{b}_1").scale for b in ("block35", "block17", "block8")] == [0.17, 0.10, 0.20]
  # Every weight layer has a slim scope, and no two share one.
  scopes = model.slim_scopes
  assert {l.name for l in model.layers if l.weights} == set(scopes)
  assert len(set(scopes.values())) == len(scopes)


def test_frozen_batch_norm_runs_in_inference_mode():
  image = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  frozen = tiny_backbone(output_stride=16, bn_trainable=False)
  with_bn, linear = conv_bn_counts(TINY_REPEATS)
  with_bn -= 7 + 4 * 2 + 1  # a first stage has no tail: mixed_7a, block8 and the final one, conv_7b
  linear -= 2
  assert len(frozen.trainable_weights) == with_bn + 2 * linear  # kernels and biases only
  assert len(frozen.non_trainable_weights) == 3 * with_bn  # beta, moving mean and variance
  before = [w.numpy() for w in frozen.non_trainable_weights]
  np.testing.assert_array_equal(frozen(image, training=True)["4"], frozen(image, training=False)["4"])
  for old, new in zip(before, frozen.non_trainable_weights):
    np.testing.assert_array_equal(old, new.numpy())  # moving statistics untouched
  trained = tiny_backbone(output_stride=16)
  assert not np.allclose(trained(image, training=True)["4"], trained(image, training=False)["4"])


def test_inference_mode_batch_norm_keeps_beta_trainable():
  """The OD API's `batch_norm_trainable: false`: moving statistics in training, betas still learn."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  image = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  model = tiny_backbone(output_stride=16, bn_inference_mode=True)
  bn = model.get_layer("conv2d_1a_3x3_bn")
  before = bn.moving_mean.numpy()
  with tf.GradientTape() as tape:
    features = model(image, training=True)["4"]
    loss = tf.reduce_sum(features)
  np.testing.assert_array_equal(features, model(image, training=False)["4"])
  np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
  assert bn.beta.trainable and any(w is bn.beta for w in model.trainable_weights)
  assert np.abs(tape.gradient(loss, bn.beta).numpy()).max() > 0
  with_bn, linear = conv_bn_counts(TINY_REPEATS)
  with_bn -= 7 + 4 * 2 + 1
  assert len(model.trainable_weights) == 2 * with_bn + 2 * (linear - 2)  # kernels, biases, betas


def test_factory_builds_from_the_config():
  config = backbone_configs.Backbone(
      type="inception_resnet_v2",
      inception_resnet_v2=backbone_configs.InceptionResNetV2(
          output_stride=16, padding="VALID", bn_trainable=False, **TINY))
  norm = common.NormActivation(norm_momentum=0.9997, norm_epsilon=0.001)
  model = factory.build_backbone(tf_keras.layers.InputSpec(shape=[None, None, None, 3]), config, norm,
                                 tf_keras.regularizers.L2(4e-5))
  assert isinstance(model, irv2.InceptionResNetV2)
  assert list(model.output_specs) == ["4"]
  bn = model.get_layer("conv2d_1a_3x3_bn")
  assert (bn.momentum, bn.epsilon, bn.trainable, bn.scale) == (0.9997, 0.001, False, False)
  assert model.get_layer("mixed_6a_branch_0_conv2d_1a_3x3").padding == "valid"
  assert len(model.losses) == sum(isinstance(l, tf_keras.layers.Conv2D) for l in model.layers)
  tail = irv2.build_inception_resnet_v2_tail(config, norm)
  assert tail.get_layer("conv_7b_bn").trainable is False
  assert tail.get_layer("mixed_7a_branch_3_maxpool_1a_3x3").padding == "valid"


def test_config_round_trip():
  model = tiny_backbone(output_stride=8, padding="VALID", bn_trainable=False)
  clone = irv2.InceptionResNetV2.from_config(model.get_config())
  assert [l.name for l in clone.layers[1:]] == [l.name for l in model.layers[1:]]  # after the Input
  assert clone.get_config() == model.get_config()


def test_bad_options_are_rejected():
  with pytest.raises(ValueError, match="output_stride"):
    irv2.InceptionResNetV2(output_stride=4)
  with pytest.raises(ValueError, match="padding"):
    irv2.InceptionResNetV2(padding="REFLECT", **TINY)


def test_depth_multiplier_scales_every_convolution_and_keeps_names_and_scopes(whole):
  """Each convolution has max(int(published * m), 8) filters, except each block's linear 1x1, which
  returns to its input's width; the layers, their slim scopes and the tail's input follow."""
  thin = tiny_backbone(output_stride=32, padding="VALID", depth_multiplier=0.25)
  assert thin.slim_scopes == whole.slim_scopes
  for layer in whole.layers:
    if not isinstance(layer, tf_keras.layers.Conv2D):
      continue
    filters = thin.get_layer(layer.name).filters
    if layer.use_bias:  # the residual blocks' linear 1x1 convolution
      assert filters == thin.get_layer(layer.name[:-len("_conv")]).output_shape[-1]
    else:
      assert filters == max(int(layer.filters * 0.25), 8), layer.name
  assert irv2.first_stage_channels(0.25) == 2 * 96 + 24 + 16 + 24 + 16
  first = tiny_backbone(output_stride=8, depth_multiplier=0.25)
  features = first(np.zeros((1, 64, 64, 3), np.float32))["3"]
  assert features.shape[-1] == irv2.first_stage_channels(0.25)
  tail = irv2.InceptionResNetV2Tail(block8_repeats=1, depth_multiplier=0.25)
  assert tail(np.zeros((2, 9, 9, features.shape[-1]), np.float32)).shape == (2, 4, 4, 384)
  assert irv2.InceptionResNetV2.from_config(thin.get_config()).count_params() == thin.count_params()
  assert thin.count_params() < whole.count_params() / 10
