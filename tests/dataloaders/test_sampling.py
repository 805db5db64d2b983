"""Tests for oi_models.dataloaders.sampling (numpy only)."""

import numpy as np
import pytest
from scipy import stats

from oi_models.dataloaders import sampling

# A long tail as in Open Images: class c has SIZES[c] images, one class per image.
SIZES = [1, 2, 3, 5, 10, 40, 200, 1000]


def _single_class_images(sizes=SIZES):
  labels = np.repeat(np.arange(len(sizes)), sizes)
  return sampling.ImageClasses.from_lists([[c] for c in labels]), labels


def _chi2_pvalue(observed, expected_probability):
  expected = expected_probability * observed.sum()
  return stats.chisquare(observed, expected).pvalue


def test_image_classes_from_pairs_merges_duplicates_and_keeps_empty_rows():
  ic = sampling.ImageClasses.from_pairs([2, 0, 2, 2, 0], [5, 1, 3, 5, 1], num_images=4)
  np.testing.assert_array_equal(ic.offsets, [0, 1, 1, 3, 3])
  np.testing.assert_array_equal(ic.classes, [1, 3, 5])
  assert ic.num_images == 4
  np.testing.assert_array_equal(ic.images_per_class(7), [0, 1, 0, 1, 0, 1, 0])


def test_image_classes_from_lists_matches_from_pairs():
  lists = [[3, 3, 1], [], [0], [2, 1]]
  ic = sampling.ImageClasses.from_lists(lists)
  np.testing.assert_array_equal(ic.offsets, [0, 2, 2, 3, 5])
  np.testing.assert_array_equal(ic.classes, [1, 3, 0, 1, 2])


def test_image_classes_rejects_out_of_range():
  with pytest.raises(ValueError, match="image indices"):
    sampling.ImageClasses.from_pairs([0, 4], [1, 1], num_images=4)
  with pytest.raises(ValueError, match="class indices"):
    sampling.ImageClasses.from_pairs([0], [-1], num_images=1)


def test_class_aware_draws_classes_uniformly_and_plain_shuffle_does_not():
  ic, labels = _single_class_images()
  n = 20_000
  uniform = np.full(len(SIZES), 1 / len(SIZES))
  aware = sampling.ClassAwareSampler(ic, seed=3, epoch_size=n).epoch(0)
  assert _chi2_pvalue(np.bincount(labels[aware], minlength=len(SIZES)), uniform) > 1e-3
  shuffled = np.concatenate([sampling.ShuffleSampler(ic.num_images, seed=3).epoch(e) for e in range(20)])
  assert _chi2_pvalue(np.bincount(labels[shuffled], minlength=len(SIZES)), uniform) < 1e-6


def test_class_aware_image_frequencies_match_brute_force_probabilities():
  lists = [[0], [0, 1], [1, 2], [2], [2], [2], [2, 3], [], [5]]
  ic = sampling.ImageClasses.from_lists(lists)
  classes = sorted({c for row in lists for c in row})
  members = {c: [i for i, row in enumerate(lists) if c in row] for c in classes}
  # P(image) = sum over its classes of P(class) * P(image | class).
  expected = np.array([sum(1 / len(classes) / len(members[c]) for c in row) for row in lists])
  sampler = sampling.ClassAwareSampler(ic, seed=11, epoch_size=30_000)
  np.testing.assert_array_equal(sampler.classes, classes)
  counts = np.bincount(sampler.epoch(0), minlength=len(lists))
  assert counts[7] == 0  # An image without classes is never drawn.
  keep = expected > 0
  assert _chi2_pvalue(counts[keep], expected[keep]) > 1e-3


def test_samplers_are_deterministic_and_reshuffle_every_epoch():
  ic, _ = _single_class_images()
  for make in (lambda s: sampling.ClassAwareSampler(ic, seed=s),
               lambda s: sampling.ShuffleSampler(ic.num_images, seed=s)):
    a, b, other = make(7), make(7), make(8)
    np.testing.assert_array_equal(a.epoch(0), b.epoch(0))
    np.testing.assert_array_equal(a.epoch(5), b.epoch(5))
    assert not np.array_equal(a.epoch(0), a.epoch(1))
    assert not np.array_equal(a.epoch(0), other.epoch(0))
    first_three = [e for e, _ in zip(a.epochs(start_epoch=4), range(3))]
    for k, e in enumerate(first_three):
      np.testing.assert_array_equal(e, a.epoch(4 + k))


def test_shuffle_epoch_is_a_permutation():
  order = sampling.ShuffleSampler(101, seed=0).epoch(2)
  np.testing.assert_array_equal(np.sort(order), np.arange(101))
  assert order.dtype == np.int64


@pytest.mark.parametrize("num_images", [120, 121])
def test_shuffle_worker_shards_are_disjoint_equal_and_cover_everything(num_images):
  shards = [sampling.ShuffleSampler(num_images, seed=1, num_workers=4, worker_index=w).epoch(3)
            for w in range(4)]
  assert {len(s) for s in shards} == {-(-num_images // 4)}
  np.testing.assert_array_equal(np.unique(np.concatenate(shards)), np.arange(num_images))
  if num_images % 4 == 0:
    assert len(np.concatenate(shards)) == num_images  # Exactly disjoint.


def test_class_aware_worker_streams_interleave_to_the_single_worker_stream():
  ic, _ = _single_class_images()
  single = sampling.ClassAwareSampler(ic, seed=5, num_workers=1, epoch_size=1200)
  workers = [sampling.ClassAwareSampler(ic, seed=5, num_workers=3, worker_index=w, epoch_size=1200)
             for w in range(3)]
  streams = [w.epoch(2) for w in workers]
  assert all(len(s) == 400 == len(w) for s, w in zip(streams, workers))
  np.testing.assert_array_equal(np.stack(streams, axis=1).reshape(-1), single.epoch(2))
  assert not np.array_equal(streams[0], streams[1])


def test_invalid_arguments():
  ic, _ = _single_class_images()
  with pytest.raises(ValueError, match="worker_index"):
    sampling.ShuffleSampler(10, num_workers=2, worker_index=2)
  with pytest.raises(ValueError, match="no image has a class"):
    sampling.ClassAwareSampler(sampling.ImageClasses.from_lists([[], []]))
