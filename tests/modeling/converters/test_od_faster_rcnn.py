"""The OD API Faster R-CNN converter's own rules (its conversion of the reference is in
tests/modeling/faster_rcnn/test_parity.py)."""

import numpy as np
import pytest
import tensorflow as tf

from oi_models.modeling import converters
from oi_models.modeling.converters import od_faster_rcnn


def test_two_class_softmax_converts_exactly_to_one_sigmoid_logit():
  rng = np.random.default_rng(0)
  kernel = rng.normal(0, 1, (1, 1, 8, 6)).astype(np.float32)  # 3 anchors x (background, object)
  bias = rng.normal(0, 1, 6).astype(np.float32)
  x = rng.normal(0, 1, (50, 8)).astype(np.float32)
  two = (x @ kernel[0, 0] + bias).reshape(50, 3, 2)
  softmax = np.exp(two[..., 1]) / np.exp(two).sum(-1)
  one = x @ od_faster_rcnn.sigmoid_from_softmax(kernel)[0, 0] + od_faster_rcnn.sigmoid_from_softmax(bias)
  np.testing.assert_allclose(1 / (1 + np.exp(-one)), softmax, rtol=1e-5)


def test_another_checkpoint_is_one_error_naming_what_is_missing(tmp_path):
  tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "other"))
  with pytest.raises(converters.ConversionError, match=r"(?s)not a TF OD API Faster R-CNN .*"
                     r"SecondStageBoxPredictor/ClassPredictor/weights"):
    od_faster_rcnn.convert(converters.SourceCheckpoint(str(tmp_path / "other")))


def test_both_sources_are_registered():
  assert {"od_faster_rcnn_inception_resnet_v2", "slim_inception_resnet_v2_detector"} <= set(
      converters.kinds())
