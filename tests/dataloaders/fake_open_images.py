"""Tiny `open_images` examples for input-pipeline tests, in the builder's own feature spec.

Examples are serialized exactly as TFDS writes them (`serialize_example(encode_example(...))`), so a list
of them stands in for a random-access data source.
"""

import numpy as np
import tensorflow_datasets as tfds

from oi_models.datasets import builder

BOX_MIDS = ["/m/a", "/m/b", "/m/d"]
IMAGE_MIDS = ["/m/a", "/m/c", "/m/b", "/m/d", "/m/e"]


def features(machine_labels: bool = False) -> tfds.features.FeaturesDict:
  """The builder's own feature spec over the tiny class lists."""
  return builder.feature_spec(BOX_MIDS, IMAGE_MIDS, with_machine_labels=machine_labels)


def example(image_id, image, boxes=(), box_labels=(), group_of=None, image_labels=(),
            confidences=(), machine=None):
  """A feature dict for `encode_example`; boxes are (ymin, xmin, ymax, xmax) normalized."""
  n = len(boxes)
  group_of = [0] * n if group_of is None else group_of
  ex = {
      "image": np.asarray(image, np.uint8),
      "image/id": image_id,
      "image/original_width": image.shape[1],
      "image/original_height": image.shape[0],
      "objects": {
          "bbox": [tfds.features.BBox(*b) for b in boxes],
          "label": list(box_labels),
          "is_occluded": [0] * n, "is_truncated": [-1] * n, "is_group_of": list(group_of),
          "is_depiction": [0] * n, "is_inside": [0] * n, "source": ["xclick"] * n,
      },
      "image_labels": {"label": list(image_labels), "confidence": list(confidences),
                       "source": ["verification"] * len(image_labels)},
  }
  if machine is not None:
    labels, conf = machine
    ex["machine_labels"] = {"label": list(labels), "confidence": list(conf),
                            "source": ["machine"] * len(labels)}
  return ex


def serialize(feats: tfds.features.FeaturesDict, examples) -> list:
  return [feats.serialize_example(feats.encode_example(ex)) for ex in examples]


def image_id(i: int) -> str:
  return f"{(int(i) * 0x9E3779B97F4A7C15) % 2**64:016x}"  # Spread over 64 bits, high bit included.


def noise_image(rng, height, width):
  return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
