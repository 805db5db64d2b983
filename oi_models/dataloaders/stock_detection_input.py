"""Model Garden's own detection parsers on `open_images` examples, with the Open Images eval extras.

The stock detectors (`configs.stock_detection`) keep Model Garden's input processing: its Mask R-CNN
parser (fit-in resize with scale jitter, multilevel RPN anchor targets from `ops.anchor`) and its
RetinaNet parser (multilevel anchor targets of `ops.anchor.AnchorLabeler`, focal-loss weights). They
run on what `detection_input.Decoder` makes of a TFDS example, which is Model Garden's decoded
layout. The one addition is in the evaluation labels: the image-level labels the challenge metric
needs (`groundtruths` `image_labels_positive` / `image_labels_negative`, padded with -1 to
`max_num_image_labels`, and their counts `num_image_labels_*`), as `detection_input.Parser` gives.
"""

import tensorflow as tf
from official.vision.dataloaders import maskrcnn_input
from official.vision.dataloaders import retinanet_input
from official.vision.ops import preprocess_ops

IMAGE_LABEL_KINDS = ("positive", "negative")


def image_label_groundtruths(data: dict, max_num_image_labels: int) -> dict:
  """The decoded example's image-level labels, padded with -1 to a static length, and their counts."""
  groundtruths = {}
  for kind in IMAGE_LABEL_KINDS:
    labels = data[f"groundtruth_image_labels_{kind}"]
    groundtruths[f"num_image_labels_{kind}"] = tf.shape(labels)[0]
    groundtruths[f"image_labels_{kind}"] = preprocess_ops.clip_or_pad_to_fixed_size(
        labels, max_num_image_labels, -1)
  return groundtruths


class _WithImageLabels:
  """Adds `image_label_groundtruths` to a Model Garden parser's evaluation labels."""

  def __init__(self, *args, max_num_image_labels: int = 100, **kwargs):
    super().__init__(*args, **kwargs)
    self._max_num_image_labels = max_num_image_labels

  def _parse_eval_data(self, data):
    image, labels = super()._parse_eval_data(data)
    labels["groundtruths"].update(image_label_groundtruths(data, self._max_num_image_labels))
    return image, labels


class MaskRCNNParser(_WithImageLabels, maskrcnn_input.Parser):
  """`maskrcnn_input.Parser` (Faster R-CNN without masks) with the image-level labels at evaluation."""


class RetinaNetParser(_WithImageLabels, retinanet_input.Parser):
  """`retinanet_input.Parser` with the image-level labels at evaluation."""
