"""Autograph's rules after importing a package of traced code (here `oi_models.modeling.faster_rcnn`):
Model Garden vision's and this package's functions are called unconverted, any other function is
still converted. (That the package's and
Model Garden's models, input pipelines and tasks trace and train unconverted is the rest of the
suite: every model test traces them.)"""

import numpy as np
import tensorflow as tf
from official.vision.ops import box_ops
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from oi_models.modeling import detection_losses
from oi_models.modeling import faster_rcnn  # pylint: disable=unused-import  (applies the rules)
from oi_models.modeling import tracing


def _users_function(x):
  if tf.reduce_sum(x) > 0:  # needs autograph: a tensor as a Python bool
    return x * 2.0
  return -x


def test_package_and_model_garden_vision_are_unconverted_and_others_converted():
  assert conversion.is_allowlisted(detection_losses.rpn_losses)
  assert conversion.is_allowlisted(box_ops.bbox_overlap)
  assert not conversion.is_allowlisted(_users_function)
  traced = tf.function(_users_function)
  np.testing.assert_array_equal(traced(tf.constant([1.0, -3.0])).numpy(), [-1.0, 3.0])
  np.testing.assert_array_equal(traced(tf.constant([1.0, 3.0])).numpy(), [2.0, 6.0])


def test_installing_twice_adds_the_rules_once():
  before = tuple(autograph_config.CONVERSION_RULES)
  tracing.skip_autograph_conversion()
  assert tuple(autograph_config.CONVERSION_RULES) == before
  assert sum(isinstance(rule, autograph_config.DoNotConvert) and rule.matches("oi_models.tasks")
             for rule in before) == 1

