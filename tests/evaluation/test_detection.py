"""Tests of the Open Images detection metric core: hand-worked rules, a published example, brute force.

Hand-worked cases pin each rule of the official protocol (values worked out on paper in the comments);
random workloads with tied scores, grid-aligned boxes (exact IoU/IoA ties and values at the 0.5
threshold), group-of boxes and image-level labels must give bit-identical AP, precision and recall to
the plain per-detection implementation in brute_force.py.
"""

import numpy as np
import pytest

from oi_models.evaluation import box_ops
from oi_models.evaluation import detection
from tests.evaluation import brute_force
from tests.evaluation import workloads

FULL = (0.0, 0.0, 1.0, 1.0)
TOP_LEFT = (0.0, 0.0, 0.5, 0.5)
TOP_RIGHT = (0.0, 0.5, 0.5, 1.0)
BOTTOM_LEFT = (0.5, 0.0, 1.0, 0.5)


def _evaluator(num_classes, protocol, gt, dets, labels=None, batches=1, iou_threshold=0.5):
  """Builds an evaluator from row lists (the same rows brute_force.evaluate takes)."""
  ev = detection.DetectionEvaluator(num_classes, protocol=protocol, iou_threshold=iou_threshold)
  label_ids = None if labels is None else np.array([row[0] for row in labels], dtype=np.uint64)
  label_classes = None if labels is None else np.array([row[1] for row in labels], dtype=np.int64)
  ev.add_ground_truth(np.array([row[0] for row in gt], dtype=np.uint64),
                      np.array([row[1] for row in gt], dtype=np.int64),
                      np.array([row[2] for row in gt], dtype=np.float64).reshape(-1, 4),
                      np.array([row[3] for row in gt], dtype=bool), label_ids, label_classes)
  for batch in np.array_split(np.arange(len(dets)), batches):
    rows = [dets[i] for i in batch]
    ev.add_detections(np.array([row[0] for row in rows], dtype=np.uint64),
                      np.array([row[1] for row in rows], dtype=np.int64),
                      np.array([row[2] for row in rows], dtype=np.float64),
                      np.array([row[3] for row in rows], dtype=np.float64).reshape(-1, 4))
  return ev


def _evaluate(num_classes, protocol, gt, dets, labels=None):
  return _evaluator(num_classes, protocol, gt, dets, labels).evaluate()


def _shift_right(box, amount):
  return (box[0], box[1] + amount, box[2], box[3] + amount)


def test_box_ops_pairs():
  a = np.array([TOP_LEFT, TOP_LEFT, TOP_LEFT])
  b = np.array([(0.0, 0.0, 0.5, 0.25), FULL, TOP_RIGHT])
  np.testing.assert_array_equal(box_ops.paired_iou(a, b), [0.5, 0.25, 0.0])
  np.testing.assert_array_equal(box_ops.paired_ioa(b, a), [0.5, 1.0, 0.0])  # share of a inside b
  np.testing.assert_array_equal(box_ops.paired_ioa(a, b), [1.0, 0.25, 0.0])  # share of b inside a


def test_duplicate_detection_is_a_false_positive():
  # Two boxes A, B. Ranked: 0.9 on A (TP), 0.8 on A again (FP: A taken), 0.7 on B (TP).
  # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3.
  gt = [(1, 0, TOP_LEFT, False), (1, 0, TOP_RIGHT, False)]
  dets = [(1, 0, 0.8, TOP_LEFT), (1, 0, 0.9, TOP_LEFT), (1, 0, 0.7, TOP_RIGHT)]
  for protocol in detection.PROTOCOLS:
    res = _evaluate(1, protocol, gt, dets)
    np.testing.assert_array_equal(res.precision[0], [1.0, 0.5, 2 / 3])
    np.testing.assert_array_equal(res.recall[0], [0.5, 0.5, 1.0])
    assert res.ap[0] == 0.5 * 1.0 + 0.5 * (2 / 3)
    assert (res.num_tp[0], res.num_fp[0]) == (2, 1)


def test_no_fall_back_to_the_second_best_box():
  # A = TOP_LEFT, B = A shifted right by 1/8. The 0.8 detection (A shifted by 1/16) has IoU 7/9 with
  # both, exactly: its target is the first maximum, A, already taken by the 0.9 detection -> FP,
  # although B (IoU 7/9 >= 0.5) is free. Precision 1, 1/2; recall 1/2, 1/2; AP 1/2.
  box_a = TOP_LEFT
  box_b = _shift_right(TOP_LEFT, 0.125)
  gt = [(1, 0, box_a, False), (1, 0, box_b, False)]
  dets = [(1, 0, 0.9, box_a), (1, 0, 0.8, _shift_right(TOP_LEFT, 0.0625))]
  res = _evaluate(1, "challenge", gt, dets)
  np.testing.assert_array_equal(res.precision[0], [1.0, 0.5])
  assert res.ap[0] == 0.5
  # With B first in ground-truth order the same detection targets B (first maximum) and is a TP.
  res = _evaluate(1, "challenge", gt[::-1], dets)
  assert res.ap[0] == 1.0


def test_best_box_taken_even_when_another_box_matches():
  # The 0.8 detection overlaps A with IoU 1 and B with IoU 1/2 (>= 0.5): it targets A only (taken).
  box_b = (0.0, 0.0, 0.5, 0.25)  # half of A
  gt = [(1, 0, TOP_LEFT, False), (1, 0, box_b, False)]
  dets = [(1, 0, 0.9, TOP_LEFT), (1, 0, 0.8, TOP_LEFT)]
  res = _evaluate(1, "challenge", gt, dets)
  assert (res.num_tp[0], res.num_fp[0]) == (1, 1)
  assert res.ap[0] == 0.5


def test_group_of_absorption_challenge_and_v2():
  # Class 0 on image 1: plain box N (TOP_LEFT), group-of boxes G1 (bottom half), G2 (TOP_RIGHT).
  group_1 = (0.5, 0.0, 1.0, 1.0)
  gt = [(1, 0, TOP_LEFT, False), (1, 0, group_1, True), (1, 0, TOP_RIGHT, True)]
  dets = [
      (1, 0, 0.5, TOP_LEFT),                 # TP on N
      (1, 0, 0.95, TOP_LEFT),                # ranks first: TP on N; the 0.5 one becomes a duplicate...
      (1, 0, 0.3, BOTTOM_LEFT),              # inside G1
      (1, 0, 0.6, (0.6, 0.6, 0.9, 0.9)),     # inside G1: the highest absorbed score of G1
      (1, 0, 0.2, (0.75, 0.0, 1.0, 1.0)),    # inside G1
      (1, 0, 0.0, TOP_RIGHT),                # inside G2, score 0: absorbed but G2 gets no entry
      (1, 0, 0.4, (0.1, 0.1, 0.6, 0.4)),     # IoU with N < 0.5, IoA with G1 = 1/5: a plain FP
  ]
  # ...the 0.5 duplicate of N has IoA 0 with the group boxes, so it stays a false positive.
  # Challenge entries: 0.95 TP, 0.5 FP, 0.4 FP, G1 -> (0.6, TP); num_gt = 1 + 2 = 3.
  # Ranked: 0.95 TP, 0.6 TP, 0.5 FP, 0.4 FP: precision 1, 1, 2/3, 1/2; recall 1/3, 2/3, 2/3, 2/3.
  res = _evaluate(1, "challenge", gt, dets)
  assert res.num_gt[0] == 3.0
  np.testing.assert_array_equal(res.precision[0], [1.0, 1.0, 2 / 3, 0.5])
  np.testing.assert_array_equal(res.recall[0], [1 / 3, 2 / 3, 2 / 3, 2 / 3])
  assert res.ap[0] == np.sum([1 / 3 * 1.0, (2 / 3 - 1 / 3) * 1.0, (1.0 - 2 / 3) * 0.0])
  assert (res.num_tp[0], res.num_fp[0]) == (2, 2)
  # V2: absorbed detections vanish, no group-of TP, num_gt = 1. Ranked 0.95 TP, 0.5 FP, 0.4 FP.
  res = _evaluate(1, "v2", gt, dets)
  assert res.num_gt[0] == 1.0
  np.testing.assert_array_equal(res.precision[0], [1.0, 0.5, 1 / 3])
  assert res.ap[0] == 1.0
  assert (res.num_tp[0], res.num_fp[0]) == (1, 2)


def test_group_of_box_counts_one_true_positive_at_its_best_score():
  # Ten detections inside one group-of box: one TP scored 0.9, nothing else (no FP either).
  gt = [(1, 0, FULL, True), (2, 0, TOP_LEFT, False)]
  dets = [(1, 0, s, TOP_LEFT) for s in (0.1, 0.9, 0.5, 0.3, 0.2, 0.4, 0.6, 0.7, 0.8, 0.05)]
  dets.append((2, 0, 0.95, TOP_RIGHT))  # FP on image 2, ranked first
  res = _evaluate(1, "challenge", gt, dets)
  # Ranked: 0.95 FP, 0.9 TP: precision 0, 1/2; recall 0, 1/2 -> AP = 1/2 * 1/2.
  np.testing.assert_array_equal(res.precision[0], [0.0, 0.5])
  np.testing.assert_array_equal(res.recall[0], [0.0, 0.5])
  assert res.ap[0] == 0.25


def test_true_positive_is_not_absorbed_and_taken_box_duplicate_is():
  # A duplicate of a taken plain box that lies inside a group-of box is absorbed, not a FP.
  gt = [(1, 0, TOP_LEFT, False), (1, 0, FULL, True)]
  dets = [(1, 0, 0.9, TOP_LEFT), (1, 0, 0.8, TOP_LEFT)]
  res = _evaluate(1, "challenge", gt, dets)
  # Entries: 0.9 TP (plain), G -> (0.8, TP). num_gt 2, AP 1.
  assert (res.num_tp[0], res.num_fp[0]) == (2, 0)
  assert res.ap[0] == 1.0
  res = _evaluate(1, "v2", gt, dets)
  assert (res.num_tp[0], res.num_fp[0]) == (1, 0)
  assert res.ap[0] == 1.0


def test_verified_negative_and_unverified_classes():
  # Image 1: box of class 0. Image 2: class 0 verified negative. Image 3: only a label of class 1.
  gt = [(1, 0, TOP_LEFT, False)]
  labels = [(2, 0), (3, 1)]
  dets = [(1, 0, 0.5, TOP_LEFT),   # TP
          (2, 0, 0.9, TOP_LEFT),   # verified negative: FP in challenge
          (3, 0, 0.95, TOP_LEFT)]  # class 0 not verified on image 3: ignored in challenge
  res = _evaluate(2, "challenge", gt, dets, labels)
  np.testing.assert_array_equal(res.precision[0], [0.0, 0.5])
  assert res.ap[0] == 0.5
  assert res.uses_image_labels
  # V2: no class filtering, every detection on an image with ground truth counts: 0.95 FP, 0.9 FP,
  # 0.5 TP -> AP 1/3.
  res = _evaluate(2, "v2", gt, dets, labels)
  np.testing.assert_array_equal(res.precision[0], [0.0, 0.0, 1 / 3])
  assert res.ap[0] == 1 / 3
  # Without image-level labels, images 2 and 3 have no ground truth at all: their detections vanish.
  for protocol in detection.PROTOCOLS:
    res = _evaluate(2, protocol, gt, dets)
    assert res.ap[0] == 1.0 and res.num_fp[0] == 0
    assert not res.uses_image_labels


def test_challenge_evaluates_only_verified_or_boxed_classes_on_an_image():
  # Image 1 has a box of class 0 and a positive label of class 1 (no box): a class-1 detection is a
  # FP (class 1 verified), a class-2 detection is ignored; class 2 has a box on image 2.
  gt = [(1, 0, TOP_LEFT, False), (2, 2, TOP_LEFT, False)]
  labels = [(1, 1)]
  dets = [(1, 1, 0.9, TOP_LEFT), (1, 2, 0.9, TOP_LEFT), (2, 2, 0.4, TOP_LEFT)]
  res = _evaluate(3, "challenge", gt, dets, labels)
  assert res.num_fp.tolist() == [0, 1, 0]
  assert np.isnan(res.ap[1])  # verified but never boxed: no ground truth
  assert res.ap[2] == 1.0
  res = _evaluate(3, "v2", gt, dets, labels)
  assert res.num_fp.tolist() == [0, 1, 1]
  assert res.ap[2] == 0.5


def test_degenerate_detection_boxes_are_dropped():
  gt = [(1, 0, TOP_LEFT, False)]
  dets = [(1, 0, 0.9, (0.0, 0.2, 0.5, 0.2)),  # xmin == xmax
          (1, 0, 0.8, (0.5, 0.0, 0.0, 0.5)),  # ymin > ymax
          (1, 0, 0.7, (0.1, 0.1, 0.1, 0.1)),  # a point
          (1, 0, 0.5, TOP_LEFT)]
  res = _evaluate(1, "challenge", gt, dets)
  assert res.ap[0] == 1.0  # would be 1/4 if the degenerate ones counted as false positives
  assert (res.num_tp[0], res.num_fp[0]) == (1, 0)


def test_scores_at_or_below_minus_ten_are_dropped():
  gt = [(1, 0, TOP_LEFT, False)]
  dets = [(1, 0, -10.0, TOP_RIGHT), (1, 0, -20.0, TOP_RIGHT), (1, 0, -9.5, TOP_LEFT)]
  res = _evaluate(1, "challenge", gt, dets)
  assert (res.num_tp[0], res.num_fp[0]) == (1, 0)


def test_tied_scores_follow_numpy_argsort_order():
  # One TP (image 1) and one FP (image 2), both scored 0.5. The official ranking is
  # np.argsort([0.5, 0.5])[::-1] on the image-ordered concatenation [TP, FP]: the FP comes first when
  # argsort returns [0, 1], giving AP 1/2 rather than 1.
  gt = [(1, 0, TOP_LEFT, False), (2, 0, BOTTOM_LEFT, False), (2, 0, FULL, False)]
  dets = [(2, 0, 0.5, TOP_RIGHT), (1, 0, 0.5, TOP_LEFT)]
  res = _evaluate(1, "challenge", gt, dets)
  fp_first = np.argsort(np.array([0.5, 0.5]))[::-1][0] == 1
  expected_precision = [0.0, 0.5] if fp_first else [1.0, 0.5]
  np.testing.assert_array_equal(res.precision[0], expected_precision)
  assert res.ap[0] == (1 / 3 * 0.5 if fp_first else 1 / 3)


def test_tied_scores_inside_an_image_decide_which_detection_takes_the_box():
  # Two detections of score 0.5 both target box A: TOP_LEFT (IoU 1) and `near` (IoU 0.6). The one
  # ranked first by the official np.argsort(scores)[::-1] (on input order) takes A. The group-of box G
  # holds 65% of `near` but only 40% of TOP_LEFT, so the outcome shows who came first:
  # `near` first -> near TP, TOP_LEFT FP; TOP_LEFT first -> TOP_LEFT TP, near absorbed -> G is a TP.
  near = (0.0, 0.125, 0.5, 0.625)
  gt = [(1, 0, TOP_LEFT, False), (1, 0, (0.0, 0.3, 0.5, 1.0), True)]
  dets = [(1, 0, 0.5, TOP_LEFT), (1, 0, 0.5, near)]
  near_first = np.argsort(np.array([0.5, 0.5]))[::-1][0] == 1
  res = _evaluate(1, "challenge", gt, dets)
  assert (res.num_tp[0], res.num_fp[0]) == ((1, 1) if near_first else (2, 0))


def test_image_without_predictions_lowers_recall():
  gt = [(1, 0, TOP_LEFT, False), (2, 0, TOP_LEFT, False)]
  res = _evaluate(1, "challenge", gt, [(1, 0, 0.5, TOP_LEFT)])
  np.testing.assert_array_equal(res.recall[0], [0.5])
  assert res.ap[0] == 0.5


def test_class_without_ground_truth_is_nan_and_class_without_detections_is_zero():
  gt = [(1, 0, TOP_LEFT, False), (1, 1, TOP_RIGHT, False)]
  res = _evaluate(3, "challenge", gt, [(1, 0, 0.5, TOP_LEFT)])
  assert res.ap[0] == 1.0
  assert res.ap[1] == 0.0  # ground truth, no detection
  assert np.isnan(res.ap[2])
  assert res.mean_ap == 0.5
  assert res.precision[1].size == 0 and res.precision[2].size == 0


def test_detections_on_images_without_ground_truth_are_ignored():
  gt = [(1, 0, TOP_LEFT, False)]
  dets = [(1, 0, 0.5, TOP_LEFT), (7, 0, 0.9, TOP_LEFT), (8, 0, 0.99, FULL)]
  for protocol in detection.PROTOCOLS:
    res = _evaluate(1, protocol, gt, dets)
    assert res.ap[0] == 1.0 and res.num_fp[0] == 0


def test_nothing_to_evaluate():
  ev = detection.DetectionEvaluator(2)
  res = ev.evaluate()
  assert np.isnan(res.ap).all() and np.isnan(res.mean_ap)
  ev.add_detections([5], [1], [0.5], [TOP_LEFT])  # no ground truth on image 5
  assert ev.evaluate().num_fp.tolist() == [0, 0]


def test_nan_overlap_is_never_a_match():
  # A ground-truth box with a NaN coordinate (the official box validation lets NaN through) has NaN
  # IoU. The official np.argmax picks the first NaN as the maximum and then fails the >= test: the
  # detection is a FP even when the other box matches it exactly, whichever comes first.
  nan_box = (0.0, 0.0, np.nan, 0.5)
  for gt_boxes in ([nan_box, TOP_LEFT], [TOP_LEFT, nan_box]):
    gt = [(1, 0, box, False) for box in gt_boxes]
    res = _evaluate(1, "challenge", gt, [(1, 0, 0.5, TOP_LEFT)])
    assert (res.num_tp[0], res.num_fp[0]) == (0, 1)
    ap, _, _, _, num_tp, num_fp = brute_force.evaluate(1, "challenge", gt, [(1, 0, 0.5, TOP_LEFT)])
    np.testing.assert_array_equal(res.ap, ap)
    np.testing.assert_array_equal(res.num_tp, num_tp)
    np.testing.assert_array_equal(res.num_fp, num_fp)


def test_inverted_ground_truth_box_is_an_error():
  ev = detection.DetectionEvaluator(1)
  with pytest.raises(ValueError, match="row 1"):
    ev.add_ground_truth([1, 1], [0, 0], [TOP_LEFT, (0.5, 0.0, 0.0, 0.5)], [False, False])


def test_at_most_ten_thousand_detections_per_image_and_class():
  # The official per-class NMS keeps the 10000 best; the 10001st (the only TP) never counts.
  gt = [(1, 0, TOP_LEFT, False)]
  dets = [(1, 0, 0.9, BOTTOM_LEFT)] * 10000 + [(1, 0, 0.1, TOP_LEFT)]
  res = _evaluate(1, "v2", gt, dets)
  assert (res.num_tp[0], res.num_fp[0]) == (0, 10000)
  assert res.ap[0] == 0.0


def test_mmeval_oid_mean_ap_example():
  # mmeval's published OIDMeanAP case (tests/test_metrics/test_oid_map.py): one image, ten classes,
  # pixel boxes in xyxy order, no image-level labels, identity hierarchy; expected mAP 0.6666666.
  # Class 5 exact hit, class 6 IoU 107/181, class 7 not evaluable, class 8 two group-of boxes and a
  # degenerate detection (dropped) -> APs 1, 1, 0.
  def yxyx(x1, y1, x2, y2):
    return (y1 / 256, x1 / 256, y2 / 256, x2 / 256)
  dets = [(1, 5, 0.17, yxyx(27, 38, 173, 67)), (1, 6, 0.20, yxyx(46, 185, 227, 248)),
          (1, 7, 0.48, yxyx(153, 147, 250, 164)), (1, 8, 0.50, yxyx(0, 0, 0, 0))]
  gt = [(1, 5, yxyx(27, 38, 173, 67), False), (1, 6, yxyx(120, 185, 227, 248), False),
        (1, 8, yxyx(153, 100, 250, 164), True), (1, 8, yxyx(1, 1, 2, 2), True)]
  res = _evaluate(10, "challenge", gt, dets, labels=[])
  np.testing.assert_almost_equal(res.mean_ap, 0.6666666)
  assert res.mean_ap == np.nanmean([1.0, 1.0, 0.0])
  # V2 gives group-of boxes no weight: class 8 has no ground truth and the mAP is 1.
  assert _evaluate(10, "v2", gt, dets).mean_ap == 1.0


def test_metrics_keys():
  gt = [(1, 0, TOP_LEFT, False), (1, 2, TOP_LEFT, False)]
  res = _evaluate(3, "challenge", gt, [(1, 0, 0.5, TOP_LEFT)])
  metrics = res.metrics(["/m/a", "/m/b", "/m/c"])
  assert list(metrics) == ["OpenImagesDetectionChallenge_Precision/mAP@0.5IOU",
                           "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/a",
                           "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/c"]
  assert list(metrics.values()) == [0.5, 1.0, 0.0]
  res = _evaluate(3, "v2", gt, [])
  assert next(iter(res.metrics(["a", "b", "c"]))) == "OpenImagesV2_Precision/mAP@0.5IOU"
  with pytest.raises(ValueError):
    res.metrics(["a"])


def test_bad_input():
  with pytest.raises(ValueError, match="protocol"):
    detection.DetectionEvaluator(3, protocol="coco")
  ev = detection.DetectionEvaluator(3)
  with pytest.raises(ValueError, match="labels"):
    ev.add_detections([1], [3], [0.5], [TOP_LEFT])
  with pytest.raises(ValueError, match="length"):
    ev.add_detections([1, 2], [0], [0.5], [TOP_LEFT])
  with pytest.raises(ValueError, match="shape"):
    ev.add_ground_truth([1], [0], [[0.0, 0.0, 1.0]], [False])
  with pytest.raises(ValueError, match="neither"):
    ev.add_ground_truth([1], [0], [TOP_LEFT], [False], label_image_ids=[1])


@pytest.mark.parametrize("pairs_per_chunk", [None, 3], ids=["default_chunks", "chunks_of_3"])
@pytest.mark.parametrize("seed", range(8))
def test_equals_brute_force_on_random_workloads(seed, pairs_per_chunk, monkeypatch):
  if pairs_per_chunk is not None:  # many overlap chunks, groups split across them
    monkeypatch.setattr(detection, "_PAIRS_PER_CHUNK", pairs_per_chunk)
  rng = np.random.default_rng(seed)
  for _ in range(25):
    num_images, num_classes = int(rng.integers(1, 8)), int(rng.integers(1, 5))
    gt, labels, dets = workloads.random_workload(rng, num_images, num_classes)
    for protocol in detection.PROTOCOLS:
      for image_labels in (labels, None):
        res = _evaluator(num_classes, protocol, gt, dets, image_labels,
                         batches=int(rng.integers(1, 4))).evaluate()
        ap, num_gt, precisions, recalls, num_tp, num_fp = brute_force.evaluate(
            num_classes, protocol, gt, dets, image_labels)
        np.testing.assert_array_equal(res.ap, ap)
        np.testing.assert_array_equal(res.num_gt, num_gt)
        np.testing.assert_array_equal(res.num_tp, num_tp)
        np.testing.assert_array_equal(res.num_fp, num_fp)
        if not np.isnan(ap).all():
          assert res.mean_ap == np.nanmean(ap)
        for c in range(num_classes):
          if precisions[c] is not None:
            np.testing.assert_array_equal(res.precision[c], precisions[c])
            np.testing.assert_array_equal(res.recall[c], recalls[c])


def test_equals_brute_force_with_large_tied_groups():
  # Groups of 20-60 tied detections: numpy's argsort is unstable at these sizes, so the official
  # rank order must be reproduced by calling it on the exact per-group and per-class arrays.
  rng = np.random.default_rng(100)
  for _ in range(10):
    gt, labels, dets = workloads.random_workload(rng, 3, 2)
    dets = dets * int(rng.integers(2, 5))
    for protocol in detection.PROTOCOLS:
      res = _evaluate(2, protocol, gt, dets, labels)
      ap, _, precisions, _, num_tp, num_fp = brute_force.evaluate(2, protocol, gt, dets, labels)
      np.testing.assert_array_equal(res.ap, ap)
      np.testing.assert_array_equal(res.num_tp, num_tp)
      np.testing.assert_array_equal(res.num_fp, num_fp)
      for c in range(2):
        if precisions[c] is not None:
          np.testing.assert_array_equal(res.precision[c], precisions[c])


def test_ground_truth_in_several_calls_appends_rows():
  rng = np.random.default_rng(3)
  gt, labels, dets = workloads.random_workload(rng, 6, 3)
  whole = _evaluate(3, "challenge", gt, dets, labels)
  ev = detection.DetectionEvaluator(3)
  for part, label_part in zip(np.array_split(np.arange(len(gt)), 3),
                              np.array_split(np.arange(len(labels)), 3)):
    ev.add_ground_truth(np.array([gt[i][0] for i in part], dtype=np.uint64),
                        np.array([gt[i][1] for i in part], dtype=np.int64),
                        np.array([gt[i][2] for i in part]).reshape(-1, 4),
                        np.array([gt[i][3] for i in part], dtype=bool),
                        np.array([labels[i][0] for i in label_part], dtype=np.uint64),
                        np.array([labels[i][1] for i in label_part], dtype=np.int64))
  ev.add_detections(np.array([d[0] for d in dets], dtype=np.uint64), [d[1] for d in dets],
                    [d[2] for d in dets], np.array([d[3] for d in dets]).reshape(-1, 4))
  res = ev.evaluate()
  np.testing.assert_array_equal(res.ap, whole.ap)
  np.testing.assert_array_equal(res.num_gt, whole.num_gt)


def test_batches_and_image_order_do_not_matter_beyond_row_order():
  rng = np.random.default_rng(7)
  gt, labels, dets = workloads.random_workload(rng, 6, 3)
  whole = _evaluate(3, "challenge", gt, dets, labels)
  split = _evaluator(3, "challenge", gt, dets, labels, batches=5).evaluate()
  np.testing.assert_array_equal(whole.ap, split.ap)
  # Moving an image's rows as a block keeps every (image, class) group's row order: same result.
  first_image = dets[0][0] if dets else None
  moved = [d for d in dets if d[0] != first_image] + [d for d in dets if d[0] == first_image]
  np.testing.assert_array_equal(_evaluate(3, "challenge", gt, moved, labels).ap, whole.ap)


def test_configured_threshold_applies_to_iou_and_ioa():
  """A detection 60% inside a group-of box is absorbed at 0.5, a false positive at 0.7."""
  gt = [(1, 0, (0.0, 0.0, 1.0, 0.5), True), (1, 0, FULL, False)]
  dets = [(1, 0, 0.9, FULL), (1, 0, 0.8, (0.0, 0.2, 1.0, 0.7))]  # IoU with FULL 1/2; IoA 0.3/0.5
  low = detection.DetectionEvaluator(1, iou_threshold=0.5)
  high = detection.DetectionEvaluator(1, iou_threshold=0.7)
  for ev in (low, high):
    ev.add_ground_truth([1, 1], [0, 0], [g[2] for g in gt], [g[3] for g in gt])
    ev.add_detections([1, 1], [0, 0], [d[2] for d in dets], [d[3] for d in dets])
  low, high = low.evaluate(), high.evaluate()
  assert (low.num_tp[0], low.num_fp[0]) == (2, 0)  # FULL taken by 0.9; 0.8 absorbed: group TP
  assert (high.num_tp[0], high.num_fp[0]) == (1, 1)  # IoA 0.6 < 0.7: a plain false positive
  assert "mAP@0.7IOU" in next(iter(high.metrics(["a"])))


@pytest.mark.parametrize("threshold", [0.3, 0.625, 0.75])
def test_equals_brute_force_at_other_thresholds(threshold):
  rng = np.random.default_rng(int(threshold * 1000))
  for _ in range(30):
    num_images, num_classes = int(rng.integers(1, 8)), int(rng.integers(1, 5))
    gt, labels, dets = workloads.random_workload(rng, num_images, num_classes)
    for protocol in detection.PROTOCOLS:
      res = _evaluator(num_classes, protocol, gt, dets, labels, iou_threshold=threshold).evaluate()
      ap, num_gt, _, _, num_tp, num_fp = brute_force.evaluate(num_classes, protocol, gt, dets, labels,
                                                              iou_threshold=threshold)
      np.testing.assert_array_equal(res.ap, ap)
      np.testing.assert_array_equal(res.num_tp, num_tp)
      np.testing.assert_array_equal(res.num_fp, num_fp)
