"""Tests for oi_models.dataloaders.classification_input (three-state multi-hot targets, crops)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from oi_models.dataloaders import classification_input
from oi_models.dataloaders import examples
from tests.dataloaders import fake_open_images as fake

# Model classes, by MID: /m/e -> 0, /m/a -> 1, /m/b -> 2. /m/c and /m/d are not model classes.
MODEL_MIDS = ["/m/e", "/m/a", "/m/b"]
CLASS_MAP = examples.class_index_map(fake.IMAGE_MIDS, MODEL_MIDS)  # image-level index -> model index.


def _targets(labels, confidences, machine=None, threshold=0.5):
  machine_label, machine_conf = (None, None) if machine is None else (
      tf.constant(machine[0], tf.int64), tf.constant(machine[1], tf.float32))
  t, w = classification_input.label_targets(
      tf.constant(labels, tf.int64), tf.constant(confidences, tf.float32), tf.constant(CLASS_MAP),
      3, machine_label, machine_conf, threshold)
  return t.numpy().tolist(), w.numpy().tolist()


def test_class_map_is_by_mid():
  np.testing.assert_array_equal(CLASS_MAP, [1, -1, 2, -1, 0])


def test_three_states_positive_verified_negative_unknown():
  # /m/a (1) positive, /m/b (2) verified negative, /m/c not a model class, /m/e (0) unknown.
  assert _targets([0, 2, 1], [1.0, 0.0, 1.0]) == ([0, 1, 0], [0, 1, 1])
  assert _targets([], []) == ([0, 0, 0], [0, 0, 0])
  assert _targets([2, 2], [0.0, 1.0]) == ([0, 0, 1], [0, 0, 1])  # Conflicting rows: positive wins.


def test_machine_labels_fill_in_only_where_no_human_label_and_above_threshold():
  human = ([0, 2], [0.0, 1.0])  # /m/a negative, /m/b positive, /m/e unknown.
  # Machine says /m/a 0.9 (human says no: human wins), /m/b 0.1 (human yes), /m/e 0.7 (new positive).
  machine = ([0, 2, 4], [0.9, 0.1, 0.7])
  assert _targets(*human, machine=machine, threshold=0.5) == ([1, 0, 1], [1, 1, 1])
  assert _targets(*human, machine=machine, threshold=0.8) == ([0, 0, 1], [0, 1, 1])  # /m/e unknown.
  assert _targets(*human) == ([0, 0, 1], [0, 1, 1])


def _records(feats, n=3, height=48, width=80, gray=False, **kwargs):
  rng = np.random.default_rng(1)
  out = []
  for i in range(n):
    image = fake.noise_image(rng, height, width)
    if gray:
      image[:] = image[..., :1]
    out.append(fake.example(fake.image_id(i), image, image_labels=[0, 2, 1], confidences=[1.0, 0.0, 1.0],
                            **kwargs))
  return fake.serialize(feats, out)


@pytest.mark.parametrize("is_training", [True, False])
def test_dataset_outputs_static_tiny_images_and_targets(is_training):
  feats = fake.features()
  parser = classification_input.Parser.from_features(feats, MODEL_MIDS, output_size=(24, 32))
  assert parser.num_classes == 3
  ds = classification_input.dataset(
      examples.read_by_index(_records(feats), feats, tf.data.Dataset.range(3)), parser,
      is_training=is_training, batch_size=2, drop_remainder=True, deterministic=True)
  assert all(s.shape.is_fully_defined() for s in tf.nest.flatten(ds.element_spec))
  batches = list(ds)
  assert len(batches) == 1
  images, labels = batches[0]
  assert images.shape == (2, 24, 32, 3) and images.dtype == tf.float32
  np.testing.assert_array_equal(labels["labels"], [[0, 1, 0]] * 2)
  np.testing.assert_array_equal(labels["label_weights"], [[0, 1, 1]] * 2)
  expected_ids = [int(fake.image_id(i), 16) for i in range(2)]
  assert labels["source_id"].numpy().view(np.uint64).tolist() == expected_ids


def test_eval_centre_crop_of_a_grayscale_jpeg_is_deterministic_and_rgb():
  feats = fake.features()
  parser = classification_input.Parser.from_features(feats, MODEL_MIDS, output_size=(16, 16))
  records = _records(feats, n=1, gray=True)
  parsed = feats.deserialize_example(records[0], decoders={"image": tfds.decode.SkipDecoding()})
  first, _ = parser.parse_fn(is_training=False)(parsed)
  second, _ = parser.parse_fn(is_training=False)(parsed)
  assert first.shape == (16, 16, 3)
  np.testing.assert_array_equal(first, second)
  # Gray in, gray out: the channels differ only by Model Garden's per-channel normalization.
  raw = first.numpy() * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])
  np.testing.assert_allclose(raw[..., 0], raw[..., 1], atol=1e-4)


def test_machine_labels_from_the_dataset_are_merged_when_asked():
  feats = fake.features(machine_labels=True)
  records = _records(feats, n=1, machine=([4, 0], [0.8, 0.3]))  # /m/e 0.8 -> positive.
  parsed = feats.deserialize_example(records[0], decoders={"image": tfds.decode.SkipDecoding()})
  for use, expected in ((False, ([0, 1, 0], [0, 1, 1])), (True, ([1, 1, 0], [1, 1, 1]))):
    parser = classification_input.Parser.from_features(feats, MODEL_MIDS, output_size=(8, 8),
                                                       use_machine_labels=use)
    _, labels = parser.parse_fn(is_training=True)(parsed)
    assert (labels["labels"].numpy().tolist(), labels["label_weights"].numpy().tolist()) == expected


def test_rejects_a_class_list_sharing_no_class():
  with pytest.raises(ValueError, match="no dataset class"):
    classification_input.Parser.from_features(fake.features(), ["/m/zzz"])


def test_soft_machine_labels_take_their_confidence_where_no_human_label():
  human = ([0, 2], [0.0, 1.0])  # /m/a negative, /m/b positive, /m/e unknown.
  machine = ([0, 2, 4], [0.9, 0.1, 0.7])
  t, w = classification_input.label_targets(
      tf.constant(human[0], tf.int64), tf.constant(human[1]), tf.constant(CLASS_MAP), 3,
      tf.constant(machine[0], tf.int64), tf.constant(machine[1]), 0.0, soft_machine_labels=True)
  np.testing.assert_allclose(t.numpy(), [0.7, 0.0, 1.0])  # /m/e soft 0.7; human wins on /m/a, /m/b.
  np.testing.assert_array_equal(w.numpy(), [1, 1, 1])


def test_hierarchy_expansion_positives_up_negatives_down_positive_wins():
  # Hierarchy over the image-level classes: /m/c is the parent of /m/a and /m/b; /m/e child of /m/b.
  from oi_models import labels  # pylint: disable=import-outside-toplevel
  tree = {"LabelName": labels.ROOT_MID, "Subcategory": [
      {"LabelName": "/m/c", "Subcategory": [
          {"LabelName": "/m/a"}, {"LabelName": "/m/b", "Subcategory": [{"LabelName": "/m/e"}]}]},
      {"LabelName": "/m/d"}]}
  names = tuple(fake.IMAGE_MIDS)
  expander = labels.Expander(labels.Hierarchy(tree), labels.LabelMap(names, names))
  model = ["/m/a", "/m/b", "/m/c", "/m/e"]
  parser = classification_input.Parser(examples.class_index_map(names, model), (8, 8),
                                       expansion=expander)
  tables = parser._tables  # pylint: disable=protected-access
  def targets(label, confidence):
    t, w = classification_input.label_targets(tf.constant(label, tf.int64), tf.constant(confidence),
                                              parser._class_map, 4, **tables)  # pylint: disable=protected-access
    return t.numpy().tolist(), w.numpy().tolist()
  # /m/a positive -> /m/c positive; /m/b negative -> /m/e negative.
  assert targets([0, 2], [1.0, 0.0]) == ([1, 0, 1, 0], [1, 1, 1, 1])
  # /m/e positive -> /m/b and /m/c positive, though /m/c is also verified negative (-> /m/a, /m/b).
  assert targets([4, 1], [1.0, 0.0]) == ([0, 1, 1, 1], [1, 1, 1, 1])


def test_vgg_preprocessing_is_rgb_minus_the_imagenet_means():
  feats = fake.features()
  image = np.full((16, 16, 3), (200, 100, 50), np.uint8)
  record = fake.serialize(feats, [fake.example(fake.image_id(0), image, image_labels=[0],
                                               confidences=[1.0])])[0]
  parsed = feats.deserialize_example(record, decoders={"image": tfds.decode.SkipDecoding()})
  for preprocessing, expected in (("vgg", np.subtract((200, 100, 50), (123.68, 116.78, 103.94))),
                                  ("imagenet", (np.array((200, 100, 50)) / 255 - (0.485, 0.456, 0.406))
                                   / (0.229, 0.224, 0.225))):
    parser = classification_input.Parser.from_features(feats, MODEL_MIDS, output_size=(8, 8),
                                                       preprocessing=preprocessing)
    out, _ = parser.parse_fn(is_training=False)(parsed)
    # JPEG moves a flat colour by a level or two.
    np.testing.assert_allclose(out.numpy().mean(axis=(0, 1)), expected,
                               atol=3.0 if preprocessing == "vgg" else 0.06)
