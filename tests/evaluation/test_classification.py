"""Classification AP equals sklearn's average_precision_score and a plain loop, with ties and unknowns."""

import numpy as np
import pytest
from sklearn import metrics

from oi_models.evaluation import classification


def _brute_force_ap(scores, targets):
  """AP = sum over distinct thresholds t, descending, of (R(t) - R(previous)) * P(t)."""
  positives = sum(targets)
  if not positives:
    return float("nan")
  ap, previous_recall = 0.0, 0.0
  for threshold in sorted(set(scores), reverse=True):
    chosen = [t for s, t in zip(scores, targets) if s >= threshold]
    recall = sum(chosen) / positives
    ap += (recall - previous_recall) * (sum(chosen) / len(chosen))
    previous_recall = recall
  return ap


def _random(seed, num_images=400, num_classes=30):
  rng = np.random.default_rng(seed)
  # Scores on a coarse grid: many ties within a class.
  scores = rng.integers(0, 12, (num_images, num_classes)) / 11.0
  targets = rng.choice([-1, 0, 1], size=(num_images, num_classes), p=[0.5, 0.35, 0.15])
  targets[:, 0] = -1  # A class never verified.
  targets[:, 1] = np.where(targets[:, 1] == 1, 0, targets[:, 1])  # Verified, never positive.
  targets[:5, 2] = 1  # A class whose positives all tie at the top.
  scores[:, 2] = 0.5
  return scores, targets


def _reference(scores, targets, unknown_as_negative):
  sk, brute = [], []
  for c in range(scores.shape[1]):
    rows = np.ones(len(scores), bool) if unknown_as_negative else targets[:, c] != -1
    y = targets[rows, c] == 1
    sk.append(metrics.average_precision_score(y, scores[rows, c]) if y.any() else np.nan)
    brute.append(_brute_force_ap(scores[rows, c].tolist(), y.astype(int).tolist()))
  return np.array(sk), np.array(brute)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("unknown_as_negative", [False, True])
def test_dense_equals_sklearn_and_brute_force(seed, unknown_as_negative):
  scores, targets = _random(seed)
  result = classification.average_precision_dense(scores, targets, unknown_as_negative)
  sk, brute = _reference(scores, targets, unknown_as_negative)
  np.testing.assert_allclose(result.ap, sk, rtol=1e-12)
  np.testing.assert_allclose(result.ap, brute, rtol=1e-12)
  assert np.isnan(result.ap[1]) and np.isnan(result.ap[0])
  assert result.mean_ap == pytest.approx(np.nanmean(sk), rel=1e-12)
  verified = np.ones_like(targets, bool) if unknown_as_negative else targets != -1
  np.testing.assert_array_equal(result.num_positives, (targets == 1).sum(0))
  np.testing.assert_array_equal(result.num_negatives, (verified & (targets != 1)).sum(0))


@pytest.mark.parametrize("unknown_as_negative", [False, True])
def test_evaluator_accumulates_batches(unknown_as_negative):
  scores, targets = _random(3)
  evaluator = classification.ClassificationEvaluator(scores.shape[1], unknown_as_negative)
  for start in range(0, len(scores), 64):
    evaluator.add_batch(scores[start:start + 64], targets[start:start + 64])
  whole = classification.average_precision_dense(scores, targets, unknown_as_negative)
  result = evaluator.evaluate()
  np.testing.assert_array_equal(result.ap, whole.ap)
  assert result.num_images == len(scores)
  evaluator.reset()
  assert np.isnan(evaluator.evaluate().ap).all()


def test_dense_chunks_of_classes(monkeypatch):
  scores, targets = _random(4, num_images=100, num_classes=25)
  whole = classification.average_precision_dense(scores, targets, True)
  monkeypatch.setattr(classification, "_DENSE_CHUNK_ELEMENTS", 300)  # 3 classes per chunk.
  chunked = classification.average_precision_dense(scores, targets, True)
  np.testing.assert_array_equal(chunked.ap, whole.ap)


@pytest.mark.parametrize("unknown_as_negative", [False, True])
def test_sparse_pairs_with_missing_predictions(unknown_as_negative):
  """Pairs without a prediction rank last, tied: as sklearn with a score below all others."""
  scores, targets = _random(5)
  rng = np.random.default_rng(5)
  num_images, num_classes = scores.shape
  keys = np.arange(num_images, dtype=np.uint64) * 7919 + 11
  targets[:3] = -1  # Images without any verified label are not evaluated.
  img, cls = np.nonzero(targets != -1)
  predicted = rng.random(scores.shape) < 0.7
  p_img, p_cls = np.nonzero(predicted)
  # Predictions on an unknown image are ignored; a duplicate keeps its highest score.
  extra_keys = np.concatenate([keys[p_img], [np.uint64(5)], keys[p_img[:1]]])
  extra_cls = np.concatenate([p_cls, [4], p_cls[:1]])
  extra_scores = np.concatenate([scores[p_img, p_cls], [1.0], [scores[p_img[0], p_cls[0]] - 1]])
  result = classification.evaluate_sparse(keys[img], cls, targets[img, cls] == 1, extra_keys,
                                          extra_cls, extra_scores, num_classes,
                                          unknown_as_negative)
  evaluated = np.zeros(num_images, bool)
  evaluated[np.unique(img)] = True
  effective = np.where(predicted, scores, -1.0)
  expected = []
  for c in range(num_classes):
    rows = evaluated.copy() if unknown_as_negative else targets[:, c] != -1
    y = targets[rows, c] == 1
    expected.append(metrics.average_precision_score(y, effective[rows, c]) if y.any() else np.nan)
  np.testing.assert_allclose(result.ap, expected, rtol=1e-12)
  assert result.num_images == evaluated.sum()
  rows = evaluated[:, None] if unknown_as_negative else targets != -1
  np.testing.assert_array_equal(result.num_unscored, (rows & ~predicted).sum(0))


def test_hand_worked_ties():
  # Scores 0.9 (pos), 0.5 (pos), 0.5 (neg), 0.1 (neg), 0.1 (pos): thresholds 0.9, 0.5, 0.1.
  # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5.
  result = classification.average_precision_dense(
      np.array([[0.9], [0.5], [0.5], [0.1], [0.1]]), np.array([[1], [1], [0], [0], [1]]))
  assert result.ap[0] == pytest.approx(1 / 3 + 2 / 9 + 1 / 5, rel=1e-15)


def test_metrics_keys_and_nan_scores():
  result = classification.average_precision_dense(np.array([[0.9, 0.2]]), np.array([[1, 0]]))
  assert result.metrics(["/m/a", "/m/b"]) == {"OpenImagesClassification_mAP": 1.0,
                                              "OpenImagesClassification_PerformanceByCategory/AP/"
                                              "/m/a": 1.0}
  with pytest.raises(ValueError, match="NaN"):
    classification.average_precision_dense(np.array([[np.nan]]), np.array([[1]]))
  with pytest.raises(ValueError, match=r"\[B, 2\]"):
    classification.ClassificationEvaluator(2).add_batch(np.zeros((1, 3)), np.zeros((1, 3)))
