"""Tests for oi_models.data.examples: reading open_images examples by index, in sampler order."""

import numpy as np
import pytest
import tensorflow as tf

from oi_models.data import examples
from oi_models.data import sampling
from tests.data import fake_open_images as fake


def _signed(hex_id):
  value = int(hex_id, 16)
  return value - 2**64 if value >= 2**63 else value


@pytest.fixture(scope="module")
def source():
  """12 examples; example i has box class i % 3 (class 2 only on every third image)."""
  rng = np.random.default_rng(0)
  feats = fake.features()
  exs = [fake.example(fake.image_id(i), fake.noise_image(rng, 16, 24), boxes=[(0.1, 0.1, 0.9, 0.9)],
                      box_labels=[i % 3]) for i in range(12)]
  return feats, fake.serialize(feats, exs)


def test_class_index_map_by_name_with_missing():
  np.testing.assert_array_equal(
      examples.class_index_map(["/m/a", "/m/c", "/m/b"], ["/m/b", "/m/a"]), [1, -1, 0])
  with pytest.raises(ValueError, match="duplicates"):
    examples.class_index_map(["/m/a"], ["/m/a", "/m/a"])


def test_image_id_to_source_id_holds_the_64_bits():
  ids = ["0000000000000000", "000002b97e5471a0", "ffffffffffffffff", fake.image_id(7)]
  got = [int(examples.image_id_to_source_id(tf.constant(i))) for i in ids]
  assert got == [_signed(i) for i in ids]
  assert np.array(got, np.int64).view(np.uint64).tolist() == [int(i, 16) for i in ids]
  with pytest.raises(tf.errors.InvalidArgumentError, match="16 lowercase hex"):
    examples.image_id_to_source_id(tf.constant("000002B97E5471A0"))


def test_decode_image_makes_rgb_from_grayscale_jpeg():
  gray = tf.io.encode_jpeg(tf.fill([5, 7, 1], tf.constant(200, tf.uint8)))
  image = examples.decode_image(gray)
  assert image.shape == (5, 7, 3) and image.dtype == tf.uint8


def test_read_by_index_returns_the_indexed_examples_in_order(source):
  feats, records = source
  order = [5, 0, 11, 5, 3, 7, 2]
  ds = examples.read_by_index(records, feats, tf.data.Dataset.from_tensor_slices(
      tf.constant(order, tf.int64)), fetch_size=3)
  got = list(examples.with_determinism(ds, True).as_numpy_iterator())
  assert [g["image/id"].decode() for g in got] == [fake.image_id(i) for i in order]
  assert [int(g["objects"]["label"][0]) for g in got] == [i % 3 for i in order]
  assert got[0]["image"].startswith(b"\xff\xd8")  # Still JPEG-encoded: pipelines decode it themselves.


def test_image_classes_reads_the_box_labels(source):
  _, records = source
  ic = examples.image_classes(records, fetch_size=5)
  expected = sampling.ImageClasses.from_lists([[i % 3] for i in range(12)])
  np.testing.assert_array_equal(ic.offsets, expected.offsets)
  np.testing.assert_array_equal(ic.classes, expected.classes)


def test_class_aware_stream_reads_the_sampler_sequence_across_epochs(source):
  feats, records = source
  sampler = sampling.ClassAwareSampler(examples.image_classes(records), seed=4, num_workers=2,
                                       worker_index=1)
  ds = examples.read_by_index(records, feats, examples.sampler_indices(sampler, start_epoch=3))
  got = [g["image/id"].decode() for g in ds.take(2 * len(sampler)).as_numpy_iterator()]
  expected = np.concatenate([sampler.epoch(3), sampler.epoch(4)])
  assert got == [fake.image_id(i) for i in expected]


def test_parse_and_batch_is_static_and_ordered_when_deterministic():
  ds = examples.parse_and_batch(tf.data.Dataset.range(10), lambda x: x * 2, 4, drop_remainder=True,
                                deterministic=True)
  assert ds.element_spec.shape == (4,)
  assert [b.tolist() for b in ds.as_numpy_iterator()] == [[0, 2, 4, 6], [8, 10, 12, 14]]
