"""Keras Applications' InceptionResNetV2 weights into the backbone by structure, not by name."""

import numpy as np
import pytest
import tf_keras

from oi_models.modeling.backbones import inception_resnet_v2 as irv2
from oi_models.modeling.converters import keras_applications

SIZE = (107, 139)


@pytest.fixture(scope="module")
def stock():
  """Keras Applications' model, random weights and non-trivial batch-norm statistics."""
  model = tf_keras.applications.InceptionResNetV2(include_top=False, weights=None,
                                                  input_shape=(None, None, 3))
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      beta, mean, variance = layer.get_weights()
      layer.set_weights([rng.normal(0, 0.2, beta.shape), rng.normal(0, 0.2, mean.shape),
                         rng.uniform(0.5, 1.5, variance.shape)])
    elif isinstance(layer, tf_keras.layers.Conv2D) and layer.use_bias:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.2, bias.shape)])
  return model


@pytest.fixture(scope="module")
def image():
  return np.random.default_rng(1).uniform(-1, 1, (2, *SIZE, 3)).astype(np.float32)


def test_h5_loads_into_the_stride_32_backbone(stock, image, tmp_path):
  path = str(tmp_path / "inception_resnet_v2_notop.h5")
  stock.save_weights(path)
  backbone = irv2.InceptionResNetV2(output_stride=32, padding="VALID")
  report = keras_applications.load_inception_resnet_v2_h5(path, [backbone])
  assert not keras_applications._has_top(path)  # pylint: disable=protected-access
  assert report.copied_layers == 448 == sum(bool(l.weights) for l in backbone.layers)
  assert report.copied_values == stock.count_params() == backbone.count_params()
  assert report.unused == []
  np.testing.assert_allclose(backbone(image)["5"], stock(image), rtol=0, atol=1e-5)
  # Same architecture: the stock model's weight counts.
  assert len(backbone.trainable_weights) == len(stock.trainable_weights) == 488
  assert len(backbone.non_trainable_weights) == len(stock.non_trainable_weights) == 408


def test_first_stage_and_tail_take_their_layers_and_report_the_rest(stock):
  """The detector's split, reduced: each piece takes its blocks; blocks neither has are reported."""
  first_stage = irv2.InceptionResNetV2(output_stride=8, padding="SAME", block35_repeats=2,
                                       block17_repeats=3)
  tail = irv2.InceptionResNetV2Tail(block8_repeats=2)
  report = keras_applications.copy_weights(stock, [first_stage, tail])
  assert report.copied_layers == sum(bool(l.weights) for m in (first_stage, tail) for l in m.layers)
  unused = set(report.unused)
  assert {"block35_3_conv", "block17_4_conv", "block8_3_conv", "block8_9_conv"} <= unused
  assert not {"block35_2_conv", "block17_3_conv", "block8_2_conv", "block8_10_conv", "conv_7b"} & unused
  assert report.copied_layers + len(unused) == 448
  # The final block8 (linear, scale 1) is the stock block8_10 whatever its number here.
  np.testing.assert_array_equal(tail.get_layer("block8_3_conv").kernel,
                                stock.get_layer("block8_10_conv").kernel)


def test_structural_keys_ignore_names(stock):
  """Stock branch layers are conv2d_N / batch_normalization_N; keys come from the graph alone."""
  keys = keras_applications.structural_keys(stock)
  assert len(keys) == 448
  assert stock.layers[1].name.startswith("conv2d")
  assert keys[("stem", 0)] is stock.layers[1]
  assert keys[("mixed_5b", 1, 2)].kernel.shape == (5, 5, 48, 64)  # branch 1's 5x5 conv
  assert keys[("block17_7_mixed", 1, 4)].kernel.shape == (7, 1, 160, 192)


def test_target_layers_without_a_matching_source_are_errors(stock):
  extra = tf_keras.Sequential([tf_keras.Input((8, 8, 320)),
                               tf_keras.layers.Conv2D(320, 1, name="block35_11_conv")])
  with pytest.raises(ValueError, match="block35_11_conv.*has no source layer"):
    keras_applications.copy_weights(stock, [extra])
  narrow = tf_keras.Sequential([tf_keras.Input((8, 8, 3)), tf_keras.layers.Conv2D(4, 1, name="conv_7b")])
  with pytest.raises(ValueError, match="shapes"):
    keras_applications.copy_weights(stock, [narrow])
  tail = irv2.InceptionResNetV2Tail(block8_repeats=0)
  with pytest.raises(ValueError, match="targets overlap"):
    keras_applications.copy_weights(stock, [tail, tail])
