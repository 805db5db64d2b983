"""The slim-layout ResNet-v1 backbone: built by Model Garden's factory, slim's structure, its options.

Its numbers against slim's own code are in tests/modeling/converters (the oracle parity tests); these
check what a user relies on without a checkpoint.
"""

import numpy as np
import pytest
import tf_keras
from official.vision.configs import common
from official.vision.modeling.backbones import factory
from official.vision.ops import preprocess_ops

from oi_models.configs import backbones as backbone_configs
from oi_models.modeling import backbones
from oi_models.modeling.backbones import slim_resnet_v1

TINY = dict(block_repeats=[2, 2, 2, 2], depth_multiplier=0.125)


def _build(size=None, **options):
  config = backbone_configs.Backbone(type="slim_resnet_v1",
                                     slim_resnet_v1=backbone_configs.SlimResNetV1(**options))
  return factory.build_backbone(tf_keras.layers.InputSpec(shape=[None, size, size, 3]), config,
                                common.NormActivation(use_sync_bn=False))


@pytest.fixture(scope="module")
def tiny():
  """The small model at 64x64, built once (a build costs seconds)."""
  return _build(64, **TINY)


def test_factory_builds_slim_units_variables_and_levels(tiny):
  model = tiny
  assert isinstance(model, backbones.SlimResNetV1)
  units = [scope for scope in model.slim_layers if scope.endswith("/conv1") and "unit" in scope]
  assert len(units) == 8
  shortcuts = sorted(scope for scope in model.slim_layers if scope.endswith("/shortcut"))
  # Projections only where the depth changes: the first unit of each block.
  assert shortcuts == [f"block{b}/unit_1/bottleneck_v1/shortcut" for b in range(1, 5)]
  # 1 + 8 * 3 + 4 = 29 convolutions, each with a batch norm of 4 variables (gamma by default).
  assert len(model.variables) == 29 * 5
  assert len(model.trainable_variables) == 29 * 3  # kernel, beta, gamma: none lost to Keras 3
  assert {level: spec.as_list() for level, spec in model.output_specs.items()} == {
      "2": [None, 16, 16, 32], "3": [None, 8, 8, 64], "4": [None, 4, 4, 128], "5": [None, 2, 2, 256]}


def test_strides_sit_on_the_last_unit_and_levels_hold_the_last_map_at_each_stride(tiny):
  model = tiny
  x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
  outputs = model(x, training=False)
  assert {k: v.shape.as_list() for k, v in outputs.items()} == {
      "2": [1, 16, 16, 32], "3": [1, 8, 8, 64], "4": [1, 4, 4, 128], "5": [1, 2, 2, 256]}
  # Level 2 is block1's first unit (stride 4); the second unit strides, so it is not in level 2.
  probe = tf_keras.Model(model.input, [model.get_layer("block1_unit_1_bottleneck_v1_out").output,
                                       model.get_layer("block1_unit_2_bottleneck_v1_out").output])
  first, second = probe(x, training=False)
  np.testing.assert_array_equal(first.numpy(), outputs["2"].numpy())
  assert second.shape[1:3] == (8, 8)
  # The strided unit's shortcut is its input subsampled (depths match): block1/unit_2 has none.
  assert "block1/unit_2/bottleneck_v1/shortcut" not in model.slim_layers
  subsample = model.get_layer("block1_unit_2_bottleneck_v1_subsample")
  np.testing.assert_array_equal(subsample(first).numpy(), first.numpy()[:, ::2, ::2])


def test_strided_3x3_pads_explicitly_one_before_and_one_after(tiny):
  """On even inputs Keras' 'same' pads (0, 1) for a stride-2 3x3; slim's conv2d_same pads (1, 1)."""
  model = tiny
  pad = model.get_layer("block1_unit_2_bottleneck_v1_conv2_pad")
  conv, _ = model.slim_layers["block1/unit_2/bottleneck_v1/conv2"]
  assert pad.padding == ((1, 1), (1, 1)) and conv.padding == "valid" and conv.strides == (2, 2)
  stem = model.get_layer("conv1_pad")
  assert stem.padding == ((3, 3), (3, 3))
  x = np.random.default_rng(1).normal(size=(1, 16, 16, conv.input.shape[-1])).astype(np.float32)
  kernel = conv.kernel.numpy()
  expected = np.zeros((8, 8, kernel.shape[-1]), np.float32)
  padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
  for i in range(8):
    for j in range(8):
      expected[i, j] = np.einsum("hwc,hwco->o", padded[2 * i:2 * i + 3, 2 * j:2 * j + 3], kernel)
  np.testing.assert_allclose(conv(pad(x)).numpy()[0], expected, rtol=1e-4, atol=1e-4)


def test_batch_norm_follows_slim_arg_scope():
  model = _build(64, **TINY, batch_norm_scale=False)
  for conv, bn in model.slim_layers.values():
    assert not conv.use_bias
    assert bn.gamma is None and bn.beta is not None
    assert (bn.momentum, bn.epsilon) == (0.997, 1e-5)
  # Kernel, beta and the two moving statistics per conv: 116, as slim's tiny model has (118 with logits).
  assert len(model.variables) == 29 * 4


def test_model_garden_normalization_gives_the_vgg_input_outputs(tiny):
  """'model_garden' input = (x - MEAN_RGB) / STDDEV_RGB; the same weights must give the same maps."""
  vgg = tiny
  mg = _build(64, **TINY, input_normalization="model_garden")
  mg.set_weights(vgg.get_weights())
  rgb = np.random.default_rng(2).uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
  vgg_input = rgb - np.array(slim_resnet_v1.VGG_MEAN_RGB, np.float32)
  mg_input = (rgb - np.array(preprocess_ops.MEAN_RGB)) / np.array(preprocess_ops.STDDEV_RGB)
  expected = vgg(vgg_input, training=False)["5"].numpy()
  got = mg(mg_input.astype(np.float32), training=False)["5"].numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_config_round_trip_and_bad_options(tiny):
  model = tiny
  clone = backbones.SlimResNetV1.from_config(model.get_config())
  assert [v.shape for v in clone.variables] == [v.shape for v in model.variables]
  with pytest.raises(ValueError, match="model_id must be one of"):
    backbones.SlimResNetV1(model_id=34)
  with pytest.raises(ValueError, match="input_normalization"):
    backbones.SlimResNetV1(**TINY, input_normalization="imagenet")
