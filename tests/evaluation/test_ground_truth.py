"""Ground truth from the official files: class-list filtering, verified labels, hierarchy expansion."""

import csv
import json
import re

import numpy as np
import pytest

from oi_models import evaluation
from oi_models import labels
from oi_models.datasets import make_sample
from oi_models.io import readers
from oi_models.evaluation import ground_truth
from oi_models.evaluation import predictions

# Root > Animal > {Dog, Cat}; Root > Pet > Dog (Dog has two parents); Root > Vehicle > Car.
TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/an", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"}]},
    {"LabelName": "/m/pet", "Subcategory": [{"LabelName": "/m/dog"}]},
    {"LabelName": "/m/veh", "Subcategory": [{"LabelName": "/m/car"}]}]}
CLASSES = [("/m/an", "Animal"), ("/m/dog", "Dog"), ("/m/cat", "Cat"), ("/m/pet", "Pet"),
           ("/m/veh", "Vehicle"), ("/m/car", "Car"), ("/m/oth", "Other")]
AN, DOG, CAT, PET, VEH, CAR, OTH = range(7)
IMG1, IMG2, IMG3 = "000000000000000a", "000000000000000b", "000000000000000c"


@pytest.fixture
def files(tmp_path):
  (tmp_path / "h.json").write_text(json.dumps(TREE))
  (tmp_path / "classes.csv").write_text("".join(f"{m},{n}\n" for m, n in CLASSES))
  (tmp_path / "boxes.csv").write_text(
      "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
      f"{IMG1},/m/dog,0.1,0.5,0.2,0.6,0\n"
      f"{IMG1},/m/car,0.25,0.75,0,1,1\n"
      f"{IMG2},/m/oth,0,0.5,0,0.5,0\n"
      f"{IMG2},/m/notlisted,0,0.5,0,0.5,0\n")
  (tmp_path / "labels.csv").write_text(
      "ImageID,Source,LabelName,Confidence\n"
      f"{IMG1},verification,/m/dog,1\n"
      f"{IMG1},verification,/m/veh,0\n"
      f"{IMG3},verification,/m/an,0\n"
      f"{IMG3},verification,/m/cat,1\n"
      f"{IMG3},machine,/m/dog,0.6\n")
  return tmp_path


def test_hand_worked_expansion(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  truth = ground_truth.load(files / "boxes.csv", label_map, files / "h.json", files / "labels.csv")
  key1, key2, key3 = readers.image_id_to_key([IMG1, IMG2, IMG3])
  # Each box, then its copies for its ancestors (by class index), in file order.
  np.testing.assert_array_equal(truth.box_image_ids, [key1] * 5 + [key2])
  np.testing.assert_array_equal(truth.box_labels, [DOG, AN, PET, CAR, VEH, OTH])
  dog_box, car_box = [0.2, 0.1, 0.6, 0.5], [0.0, 0.25, 1.0, 0.75]
  # Exactly the float64 values of the text, as the official evaluator's pandas reads them.
  np.testing.assert_array_equal(truth.boxes, [dog_box] * 3 + [car_box] * 2 + [[0, 0, 0.5, 0.5]])
  np.testing.assert_array_equal(truth.box_is_group_of, [0, 0, 0, 1, 1, 0])
  # Positives up, negatives down; on IMG3 Cat's positive beats Animal's negative for Animal and Cat;
  # the machine label is not used.
  np.testing.assert_array_equal(truth.label_image_ids, [key1] * 5 + [key3] * 3)
  np.testing.assert_array_equal(truth.label_labels, [AN, DOG, PET, VEH, CAR, AN, DOG, CAT])
  _, _, positive = ground_truth.read_verified_labels(files / "labels.csv", label_map,
                                                     ground_truth.make_expander(files / "h.json",
                                                                                label_map))
  np.testing.assert_array_equal(positive, [1, 1, 1, 0, 0, 1, 0, 1])
  assert truth.expanded
  assert truth.reports["boxes"].skipped == {ground_truth.OUTSIDE_CLASS_LIST: 1}
  assert truth.reports["boxes"].rows_kept == 3
  assert truth.reports["image_labels"].skipped == {ground_truth.NOT_VERIFIED: 1}


def test_expand_false_keeps_rows(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  truth = ground_truth.load(files / "boxes.csv", label_map, files / "h.json", files / "labels.csv",
                            expand=False)
  np.testing.assert_array_equal(truth.box_labels, [DOG, CAR, OTH])
  np.testing.assert_array_equal(truth.label_labels, [DOG, VEH, AN, CAT])
  assert not truth.expanded


def test_expand_predictions(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  expander = ground_truth.make_expander(files / "h.json", label_map)
  preds = predictions.Predictions(np.array([7, 8], np.uint64), np.array([DOG, OTH], np.int32),
                                  np.array([0.9, 0.4]), np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5]]))
  out = ground_truth.expand_predictions(preds, expander)
  np.testing.assert_array_equal(out.label, [DOG, AN, PET, OTH])
  np.testing.assert_array_equal(out.image_id, [7, 7, 7, 8])
  np.testing.assert_array_equal(out.score, [0.9, 0.9, 0.9, 0.4])


def test_wrong_class_list_is_an_error(files, tmp_path):
  (tmp_path / "other.csv").write_text("/m/x,X\n")
  with pytest.raises(ValueError, match="class list"):
    ground_truth.load(files / "boxes.csv", labels.LabelMap.from_file(tmp_path / "other.csv"))


def test_unknown_group_of_counts_as_group_of_and_a_v3_file_has_none(files):
  """The official evaluator casts IsGroupOf to bool: -1 is group-of. V3 files lack the column."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  unknown = files / "unknown.csv"
  unknown.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                     f"{IMG1},/m/oth,0.1,0.5,0.2,0.6,-1\n{IMG1},/m/oth,0.1,0.5,0.2,0.6,0\n")
  truth = ground_truth.load(unknown, label_map)
  np.testing.assert_array_equal(truth.box_is_group_of, [True, False])
  assert truth.reports["boxes"].adjusted[ground_truth.UNKNOWN_GROUP_OF] == 1
  v3 = files / "v3.csv"
  v3.write_text("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax\n"
                f"{IMG1},xclick,/m/oth,1,0.1,0.5,0.2,0.6\n")
  truth = ground_truth.load(v3, label_map)
  np.testing.assert_array_equal(truth.box_is_group_of, [False])
  assert truth.reports["boxes"].adjusted[ground_truth.NO_GROUP_OF_COLUMN] == 1


def test_strict_names_line(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  path = files / "bad.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                  f"{IMG1},/m/dog,0.1,0.5,0.2,0.6,0\n{IMG1},/m/dog,0.1,0.5,0.2,x,0\n")
  with pytest.raises(readers.AnnotationError) as error:
    ground_truth.load(path, label_map, strict=True)
  assert (error.value.line, error.value.field) == (3, "YMax")


def test_matches_direct_expansion_on_sample(tmp_path):
  """Expansion of make_sample's files equals a row-by-row expansion through Hierarchy's sets."""
  info = make_sample.make_sample(tmp_path / "sample", num_images=40)
  label_map = labels.LabelMap.from_file(info.class_list)
  hierarchy = labels.Hierarchy.from_json(info.hierarchy)
  boxes, image_labels = info.boxes["train"], info.image_labels["train"]
  truth = ground_truth.load(boxes, label_map, hierarchy, image_labels)

  expected = []
  with open(boxes) as f:
    for row in csv.DictReader(f):
      mid = row["LabelName"]
      for cls in [mid] + sorted(hierarchy.ancestors(mid), key=label_map.index):
        box = tuple(float(row[k]) for k in ("YMin", "XMin", "YMax", "XMax"))
        expected.append((row["ImageID"], label_map.index(cls), box, row["IsGroupOf"] == "1"))
  got = list(zip(readers.key_to_image_id(truth.box_image_ids), truth.box_labels.tolist(),
                 truth.box_is_group_of.tolist()))
  assert got == [(i, c, g) for i, c, _, g in expected]  # Same rows in the same order.
  np.testing.assert_array_equal(truth.boxes, [b for _, _, b, _ in expected])
  assert truth.box_is_group_of.any()

  verdict = {}
  with open(image_labels) as f:
    for row in csv.DictReader(f):
      if row["LabelName"] not in label_map or row["Confidence"] not in ("0", "1"):
        continue
      mid, positive = row["LabelName"], row["Confidence"] == "1"
      related = hierarchy.ancestors(mid) if positive else hierarchy.descendants(mid)
      for cls in {mid} | {m for m in related if m in label_map}:
        key = (row["ImageID"], label_map.index(cls))
        verdict[key] = verdict.get(key, False) or positive
  ids, classes, positive = ground_truth.read_verified_labels(
      image_labels, label_map, ground_truth.make_expander(hierarchy, label_map))
  got = dict(zip(zip(readers.key_to_image_id(ids), classes.tolist()), positive.tolist()))
  assert got == verdict
  assert any(verdict.values()) and not all(verdict.values())


def test_coordinates_reach_the_metric_as_the_official_pandas_reads_them(files):
  """No clipping or range skip: 1.0005 and -0.0002 stay, as pandas parses them (float64)."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  path = files / "raw.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                  f"{IMG1},/m/oth,0.1,1.0005,-0.0002,0.6,0\n"
                  f"{IMG1},/m/oth,0.1,1.5,0.2,0.6,0\n")
  truth = ground_truth.load(path, label_map)
  np.testing.assert_array_equal(truth.boxes, [[-0.0002, 0.1, 0.6, 1.0005], [0.2, 0.1, 0.6, 1.5]])
  assert not truth.reports["boxes"].adjusted and not truth.reports["boxes"].skipped


def test_inverted_ground_truth_box_is_an_error_naming_the_file(files):
  """The official BoxList rejects XMin > XMax; the error names the file and the row's image."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  path = files / "inverted.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                  f"{IMG1},/m/oth,0.1,0.5,0.2,0.6,0\n"
                  f"{IMG2},/m/oth,0.6,0.5,0.2,0.6,0\n")
  for strict in (False, True):
    with pytest.raises(ValueError, match=re.escape(f"{path}: 1 ground-truth boxes") + f".*{IMG2}"):
      ground_truth.load(path, label_map, strict=strict)


def _write_challenge_boxes(path, truth, label_map):
  """Ground-truth columns as a Challenge 2019 box CSV (7 columns), floats as repr writes them."""
  ids = readers.key_to_image_id(truth.box_image_ids)
  with open(path, "w", newline="") as f:
    f.write("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n")
    for image, cls, (ymin, xmin, ymax, xmax), group_of in zip(ids, truth.box_labels, truth.boxes,
                                                              truth.box_is_group_of):
      xmin, xmax, ymin, ymax = (repr(float(v)) for v in (xmin, xmax, ymin, ymax))
      f.write(f"{image},{label_map.mids[cls]},{xmin},{xmax},{ymin},{ymax},{int(group_of)}\n")


def _write_labels(path, ids, classes, positive, label_map):
  with open(path, "w", newline="") as f:
    f.write("ImageID,Source,LabelName,Confidence\n")
    for image, cls, pos in zip(readers.key_to_image_id(ids), classes, positive):
      f.write(f"{image},verification,{label_map.mids[cls]},{int(pos)}\n")


def test_already_expanded_files_are_not_expanded_again(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  expander = ground_truth.make_expander(files / "h.json", label_map)
  once = ground_truth.load(files / "boxes.csv", label_map, files / "h.json", files / "labels.csv")
  assert once.expansion == {"boxes": ground_truth.EXPANDED, "image_labels": ground_truth.EXPANDED}
  _write_challenge_boxes(files / "boxes_x.csv", once, label_map)
  _write_labels(files / "labels_x.csv",
                *ground_truth.read_verified_labels(files / "labels.csv", label_map, expander), label_map)
  twice = ground_truth.load(files / "boxes_x.csv", label_map, files / "h.json", files / "labels_x.csv")
  by_content = ground_truth.ALREADY_EXPANDED.format(ground_truth.BY_CONTENT)
  assert twice.expansion == {"boxes": by_content, "image_labels": by_content}
  assert not twice.expanded
  for column in ("box_image_ids", "box_labels", "boxes", "box_is_group_of", "label_image_ids",
                 "label_labels"):
    np.testing.assert_array_equal(getattr(twice, column), getattr(once, column))
  # One ancestor copy missing: the file is expanded (again) as a whole, with a warning if mostly there.
  text = (files / "boxes_x.csv").read_text().splitlines()
  (files / "partial.csv").write_text("\n".join(l for l in text if "/m/pet" not in l) + "\n")
  partial = ground_truth.load(files / "partial.csv", label_map, files / "h.json")
  assert partial.expansion["boxes"] == ground_truth.EXPANDED
  # The Challenge's file name says it, whatever the content.
  named = files / "challenge-2019-validation-detection-bbox_expanded.csv"
  named.write_text((files / "boxes.csv").read_text())
  truth = ground_truth.load(named, label_map, files / "h.json")
  assert truth.expansion["boxes"] == ground_truth.ALREADY_EXPANDED.format(ground_truth.BY_NAME)
  np.testing.assert_array_equal(truth.box_labels, [DOG, CAR, OTH])


def test_perfect_predictions_on_expanded_challenge_files_score_one(tmp_path):
  """The Challenge's `_expanded.csv` files with the hierarchy: 1.0, not 0.8125 from expanding twice."""
  info = make_sample.make_sample(tmp_path / "sample", num_images=30)
  label_map = labels.LabelMap.from_file(info.class_list)
  boxes, image_labels = info.boxes["train"], info.image_labels["train"]
  once = ground_truth.load(boxes, label_map, info.hierarchy, image_labels)
  expanded_boxes = tmp_path / "challenge-2019-validation-detection-bbox_expanded.csv"
  _write_challenge_boxes(expanded_boxes, once, label_map)
  expanded_labels = tmp_path / "challenge-2019-validation-detection-human-imagelabels_expanded.csv"
  _write_labels(expanded_labels, *ground_truth.read_verified_labels(
      image_labels, label_map, ground_truth.make_expander(info.hierarchy, label_map)), label_map)
  perfect = tmp_path / "perfect.csv"
  predictions.write_predictions(perfect, once.box_image_ids, once.box_labels,
                                np.linspace(1, 0.5, len(once.box_labels)), once.boxes, label_map)
  result = evaluation.evaluate_files(expanded_boxes, perfect, label_map, info.hierarchy,
                                     expanded_labels)
  assert result.mean_ap == 1.0
  assert set(result.mode["ground_truth_expansion"].values()) == {
      ground_truth.ALREADY_EXPANDED.format(f"{ground_truth.BY_NAME} and {ground_truth.BY_CONTENT}")}
  assert "boxes already expanded (file name and every copy" in result.summary()["mode"]["description"]
  assert not result.notes  # the predictions name parent classes: no hint


def test_hint_when_predictions_name_no_parent_class(tmp_path):
  info = make_sample.make_sample(tmp_path / "sample", num_images=30)
  label_map = labels.LabelMap.from_file(info.class_list)
  boxes, image_labels = info.boxes["train"], info.image_labels["train"]
  raw = ground_truth.load(boxes, label_map, expand=False)
  hierarchy = labels.Hierarchy.from_json(info.hierarchy)
  parents = {label_map.index(m) for m in label_map.mids if hierarchy.descendants(m) & set(label_map.mids)}
  leaves = ~np.isin(raw.box_labels, list(parents))
  path = tmp_path / "leaves.csv"
  predictions.write_predictions(path, raw.box_image_ids[leaves], raw.box_labels[leaves],
                                np.full(leaves.sum(), 0.9), raw.boxes[leaves], label_map)
  result = evaluation.evaluate_files(boxes, path, label_map, hierarchy, image_labels)
  assert len(result.notes) == 1 and "--expand_predictions" in result.notes[0]
  assert result.summary()["notes"] == result.notes
  assert result.mean_ap < 1
  assert not evaluation.evaluate_files(boxes, path, label_map, hierarchy, image_labels,
                                       expand_predictions=True).notes
  assert not evaluation.evaluate_files(boxes, path, label_map, image_labels=image_labels).notes


def test_hierarchy_that_does_not_fit_the_class_list_is_an_error(files, tmp_path):
  """A typo in the hierarchy used to expand nothing while the mode said "ground truth expanded"."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  typo = tmp_path / "typo.json"
  typo.write_text((files / "h.json").read_text().replace('"/m/pet"', '"/m/pte"'))
  args = (files / "boxes.csv", files / "boxes.csv", label_map, typo, files / "labels.csv")
  with pytest.raises(readers.AnnotationError, match=r"typo.json: .* not in the class list .*/m/pte.*"
                     r"not in the hierarchy: /m/oth, /m/pet"):
    evaluation.evaluate_files(*args)
  with pytest.raises(readers.AnnotationError, match="/m/pte"):
    evaluation.evaluate_classification_files(files / "labels.csv", files / "labels.csv", label_map, typo)
