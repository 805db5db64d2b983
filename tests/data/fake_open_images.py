"""Tiny `open_images`-shaped examples for input-pipeline tests: the contract's FeaturesDict, made here.

Examples are serialized exactly as TFDS writes them (`serialize_example(encode_example(...))`), so a list
of them stands in for a random-access data source.
"""

import numpy as np
import tensorflow_datasets as tfds

BOX_MIDS = ["/m/a", "/m/b", "/m/d"]
IMAGE_MIDS = ["/m/a", "/m/c", "/m/b", "/m/d", "/m/e"]


def features(machine_labels: bool = False) -> tfds.features.FeaturesDict:
  labels = lambda: tfds.features.Sequence({
      "label": tfds.features.ClassLabel(names=IMAGE_MIDS),
      "confidence": np.float32,
      "source": tfds.features.Text(),
  })
  spec = {
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      "image/id": tfds.features.Text(),
      "image/original_width": np.int32,
      "image/original_height": np.int32,
      "objects": tfds.features.Sequence({
          "bbox": tfds.features.BBoxFeature(),
          "label": tfds.features.ClassLabel(names=BOX_MIDS),
          "is_occluded": np.int8, "is_truncated": np.int8, "is_group_of": np.int8,
          "is_depiction": np.int8, "is_inside": np.int8,
          "source": tfds.features.Text(),
      }),
      "image_labels": labels(),
  }
  if machine_labels:
    spec["machine_labels"] = labels()
  return tfds.features.FeaturesDict(spec)


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
