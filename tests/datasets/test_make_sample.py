"""Tests of the sample dataset maker: official layout and headers, boxes that match the pixels drawn,
consistent image-level labels, metadata that describes the JPEG bytes, determinism, and the CLI.

The files are read back with the csv module and PIL, independently of the code that wrote them.
"""

import base64
import collections
import csv
import hashlib
import io
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from oi_models import labels
from oi_models.datasets import make_sample as ms
from oi_models.datasets import sample_shapes

SPLITS = ("train", "validation", "test")
ID_RE = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  # 40 images: every scheduled case appears at least once in train, and validation/test get 4 each.
  return ms.make_sample(tmp_path_factory.mktemp("sample"), num_images=40, seed=3, image_size=128)


def read_rows(path):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def first_line(path):
  with open(path, encoding="utf-8", newline="") as f:
    return f.readline()


def boxes(sample, split):
  return read_rows(sample.boxes[split])


def all_boxes(sample):
  return [(split, row) for split in SPLITS for row in boxes(sample, split)]


def test_headers_are_the_official_ones(shared, sample):
  excerpts = ("annotations", "doc_excerpts")
  train_boxes = first_line(shared(*excerpts, "v6_oidv6-train-annotations-bbox_head3.csv"))
  other_boxes = first_line(shared(*excerpts, "v5_validation-annotations-bbox_row1.csv"))
  image_labels = first_line(
      shared(*excerpts, "v6_train-annotations-human-imagelabels-boxable_head4.csv"))
  metadata = first_line(shared(*excerpts, "v6_train-images-boxable-with-rotation_head2.csv"))
  assert len(train_boxes.split(",")) == 21 and len(other_boxes.split(",")) == 13
  assert first_line(sample.boxes["train"]) == train_boxes
  for split in SPLITS:
    if split != "train":
      assert first_line(sample.boxes[split]) == other_boxes
    assert first_line(sample.image_labels[split]) == image_labels
    assert first_line(sample.metadata[split]) == metadata
  assert first_line(sample.class_descriptions) == "LabelName,DisplayName\n"


def test_layout_and_file_names(sample):
  names = {p.name for p in sample.root.iterdir()}
  assert names == {
      "class-descriptions-boxable.csv", "oidv6-class-descriptions.csv",
      "bbox_labels_600_hierarchy.json", "oidv6-train-annotations-bbox.csv",
      "validation-annotations-bbox.csv", "test-annotations-bbox.csv",
      "oidv6-train-annotations-human-imagelabels.csv",
      "validation-annotations-human-imagelabels.csv", "test-annotations-human-imagelabels.csv",
      "train-images-boxable-with-rotation.csv", "validation-images-with-rotation.csv",
      "test-images-with-rotation.csv", "train", "validation", "test"}
  # The module's names (derived from releases.RELEASES["v6"]) are the official V6 ones.
  assert (ms.CLASS_LIST, ms.CLASS_DESCRIPTIONS, ms.HIERARCHY) == (
      "class-descriptions-boxable.csv", "oidv6-class-descriptions.csv",
      "bbox_labels_600_hierarchy.json")
  assert ms.BOX_FILES == {"train": "oidv6-train-annotations-bbox.csv",
                          "validation": "validation-annotations-bbox.csv",
                          "test": "test-annotations-bbox.csv"}
  assert ms.LABEL_FILES == {"train": "oidv6-train-annotations-human-imagelabels.csv",
                            "validation": "validation-annotations-human-imagelabels.csv",
                            "test": "test-annotations-human-imagelabels.csv"}
  assert ms.METADATA_FILES == {"train": "train-images-boxable-with-rotation.csv",
                               "validation": "validation-images-with-rotation.csv",
                               "test": "test-images-with-rotation.csv"}
  for path in sample.root.glob("*.csv"):
    assert b"\r" not in path.read_bytes(), path


def test_class_files(shared, sample):
  # The boxable list has no header: its first line is already a class, as in the official file.
  real_first = first_line(shared("class_lists", "class-descriptions-boxable.csv"))
  assert labels.is_mid(real_first.split(",")[0])
  assert labels.is_mid(first_line(sample.class_list).split(",")[0])
  boxable = labels.LabelMap.from_csv(sample.class_list)
  every = labels.LabelMap.from_csv(sample.class_descriptions)
  assert len(boxable) == sample.num_boxable_classes and len(every) == sample.num_image_level_classes
  assert set(boxable.mids) < set(every.mids)
  assert list(boxable.mids) == sorted(boxable.mids)
  assert '"Snow, ice and frost"' in sample.class_descriptions.read_text(encoding="utf-8")
  # Sample MIDs look like MIDs but are not real Open Images classes.
  real = labels.LabelMap.from_csv(shared("class_lists", "class-descriptions.csv"))
  assert not set(every.mids) & set(real.mids)


def test_hierarchy(sample):
  text = sample.hierarchy.read_text(encoding="utf-8")
  assert text.startswith('{\n    "LabelName": "/m/0bl9f",') and not text.endswith("\n")
  hierarchy = labels.Hierarchy.from_json(sample.hierarchy)
  boxable = labels.LabelMap.from_csv(sample.class_list)
  assert hierarchy.root == "/m/0bl9f"
  assert set(hierarchy.mids) - {hierarchy.root} == set(boxable.mids)
  two_parents = [m for m in boxable.mids if len(hierarchy.parents(m)) >= 2]
  assert [boxable.name(m) for m in two_parents] == ["Triangle"]
  assert any(hierarchy.parts(m) for m in boxable.mids)
  # Parents own no boxes; each gets some through expansion.
  box_labels = {row["LabelName"] for _, row in all_boxes(sample)}
  parents = {m for m in boxable.mids if hierarchy.children(m)}
  assert parents and not parents & box_labels
  assert parents <= set().union(*(hierarchy.ancestors(m) for m in box_labels))


def test_image_ids_files_and_order(sample):
  seen = set()
  for split in SPLITS:
    metadata = read_rows(sample.metadata[split])
    ids = [row["ImageID"] for row in metadata]
    assert all(ID_RE.match(i) for i in ids)
    assert {row["Subset"] for row in metadata} == {split}
    assert not seen & set(ids)
    seen |= set(ids)
    assert {p.stem for p in sample.image_dirs[split].glob("*.jpg")} == set(ids)
    assert len(ids) == sample.counts[split].images
    box_ids = [row["ImageID"] for row in boxes(sample, split)]
    label_ids = [row["ImageID"] for row in read_rows(sample.image_labels[split])]
    assert box_ids == sorted(box_ids) and label_ids == sorted(label_ids)
    assert set(box_ids) <= set(ids) and set(label_ids) <= set(ids)
  assert sum(c.images for c in sample.counts.values()) == 40


def test_boxes_are_valid_and_formatted_like_the_release(sample):
  for split in SPLITS:
    with open(sample.boxes[split], encoding="utf-8", newline="") as f:
      raw = list(csv.reader(f))[1:]
    assert raw, split
    for row in raw:
      assert len(row) == (21 if split == "train" else 13)
      coords = row[4:8] + row[13:]
      if split == "train":
        assert all(re.match(r"^[01]\.\d{6}$", v) for v in coords), row
      else:  # Shortest text of a float32, as in the V5 validation file (0.022673031).
        assert all(str(np.float32(float(v))) == v for v in coords), row
      xmin, xmax, ymin, ymax = map(float, row[4:8])
      assert 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1, row
      assert row[1] == "xclick" and row[3] == "1"
      assert set(row[8:13]) <= {"0", "1"}


def test_clicks_are_on_the_four_box_edges(sample):
  for row in boxes(sample, "train"):
    xmin, xmax, ymin, ymax = (float(row[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
    edges = []
    for i in range(1, 5):
      x, y = float(row[f"XClick{i}X"]), float(row[f"XClick{i}Y"])
      assert xmin <= x <= xmax and ymin <= y <= ymax, row
      edges.append({e for e, hit in (("left", x == xmin), ("right", x == xmax),
                                     ("top", y == ymin), ("bottom", y == ymax)) if hit})
    # One click per edge: some assignment of the four points to the four edges exists.
    assert any(all(e in s for e, s in zip(perm, edges))
               for perm in _permutations(("left", "right", "top", "bottom"))), row


def _permutations(items):
  if len(items) <= 1:
    yield tuple(items)
    return
  for i, item in enumerate(items):
    for rest in _permutations(items[:i] + items[i + 1:]):
      yield (item,) + rest


def test_box_contents_are_the_class_colour(sample):
  colours = {c.mid: np.array(c.colour, np.float32) for c in sample_shapes.LEAF_CLASSES}
  palette = np.stack(list(colours.values()))
  checked = 0
  for split, row in all_boxes(sample):
    image = np.asarray(Image.open(sample.image_dirs[split] / f"{row['ImageID']}.jpg").convert("RGB"),
                       np.float32)
    height, width, _ = image.shape
    x0, x1 = round(float(row["XMin"]) * width), round(float(row["XMax"]) * width)
    y0, y1 = round(float(row["YMin"]) * height), round(float(row["YMax"]) * height)
    crop = image[y0:y1, x0:x1].reshape(-1, 1, 3)
    distance = np.linalg.norm(crop - palette[None], axis=-1)  # [pixels, classes]
    near = (distance < 60).mean(axis=0)
    own = list(colours).index(row["LabelName"])
    assert near[own] >= 0.25, (split, row, near)
    assert near[own] == near.max(), (split, row, near)
    checked += 1
  assert checked == sum(c.boxes for c in sample.counts.values())


def test_metadata_describes_the_written_jpegs(sample):
  titles = []
  for split in SPLITS:
    for row in read_rows(sample.metadata[split]):
      data = (sample.image_dirs[split] / f"{row['ImageID']}.jpg").read_bytes()
      assert int(row["OriginalSize"]) == len(data)
      assert base64.b64decode(row["OriginalMD5"]) == hashlib.md5(data).digest()
      assert row["Rotation"] == "0.0"
      assert Image.open(io.BytesIO(data)).format == "JPEG"
      titles.append(row["Title"])
  assert any("," in t for t in titles) and any('"' in t for t in titles)


def test_image_level_labels_are_consistent(sample):
  boxable = labels.LabelMap.from_csv(sample.class_list)
  every = labels.LabelMap.from_csv(sample.class_descriptions)
  hierarchy = labels.Hierarchy.from_json(sample.hierarchy)
  expander = labels.Expander(hierarchy, every)
  leaves = {m for m in boxable.mids if not hierarchy.children(m)}
  unboxed_positives = 0
  for split in SPLITS:
    rows = read_rows(sample.image_labels[split])
    assert {r["Source"] for r in rows} == {"verification", "crowdsource-verification"}
    assert {r["Confidence"] for r in rows} == {"0", "1"}
    box_classes = collections.defaultdict(set)
    for row in boxes(sample, split):
      box_classes[row["ImageID"]].add(row["LabelName"])
    by_image = collections.defaultdict(list)
    for row in rows:
      by_image[row["ImageID"]].append((row["LabelName"], float(row["Confidence"])))
    for image_id, pairs in by_image.items():
      mids, confidence = zip(*pairs)
      assert len(set(mids)) == len(mids), image_id
      # No class is positive and negative, even after hierarchy expansion.
      source, expanded = expander.image_labels(every.indices(mids), np.array(confidence))
      positive = set(expanded[np.array(confidence)[source] == 1])
      negative = set(expanded[np.array(confidence)[source] == 0])
      assert not positive & negative, image_id
      positives = {m for m, c in pairs if c == 1}
      assert box_classes[image_id] <= positives, image_id
      # Drawn and verified, but not boxed (the real data is not exhaustively boxed either).
      unboxed_positives += len(positives & leaves - box_classes[image_id])
    assert set(box_classes) <= set(by_image)
  assert unboxed_positives > 0
  scene = set(every.mids) - set(boxable.mids)
  assert scene and all(any(r["LabelName"] == m and r["Confidence"] == "1"
                           for s in SPLITS for r in read_rows(sample.image_labels[s])) for m in scene)


def test_every_case_is_present(sample):
  # The schedule puts each case in every run of 10 images, so train (32 images) has them all.
  rows = boxes(sample, "train")
  for flag in ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"):
    assert any(r[flag] == "1" for r in rows), flag
  assert sample.counts["train"].empty_images > 0
  assert all(sample.counts[s].boxes > 0 for s in SPLITS)
  # A group-of box covers a cluster: well above the size of its single members.
  group_areas = [(float(r["XMax"]) - float(r["XMin"])) * (float(r["YMax"]) - float(r["YMin"]))
                 for r in rows if r["IsGroupOf"] == "1"]
  assert min(group_areas) > 4 * 0.08 ** 2


def test_counts_read_back_equal_the_returned_ones(sample):
  counts, per_class = ms.read_counts(sample.root)
  assert counts == sample.counts
  assert sum(v[0] for v in per_class.values()) == sum(c.boxes for c in counts.values())
  text = ms.summarize(sample.root)
  for split in SPLITS:
    c = sample.counts[split]
    assert re.search(rf"{split}\s+{c.images}\s+{c.empty_images}\s+{c.boxes}\s+{c.group_of}\s+"
                     rf"{c.positives}\s+{c.negatives}\b", text), text
  assert "Triangle" in text and "/m/0smp03" in text


def _tree_bytes(root: pathlib.Path) -> dict:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
  a = ms.make_sample(tmp_path / "a", num_images=12, seed=5, image_size=96)
  b = ms.make_sample(tmp_path / "b", num_images=12, seed=5, image_size=96)
  c = ms.make_sample(tmp_path / "c", num_images=12, seed=6, image_size=96)
  files_a, files_c = _tree_bytes(a.root), _tree_bytes(c.root)
  assert len(files_a) == 12 + 12
  assert files_a == _tree_bytes(b.root)
  assert files_a.keys() != files_c.keys()
  assert files_a["oidv6-train-annotations-bbox.csv"] != files_c["oidv6-train-annotations-bbox.csv"]


@pytest.mark.parametrize("splits, n, expected", [
    ((0.8, 0.1, 0.1), 300, (240, 30, 30)),
    ((0.8, 0.1, 0.1), 12, (10, 1, 1)),
    ((0.5, 0.25, 0.25), 3, (1, 1, 1)),  # Remainders .5, .75, .75: the largest get the 2 left.
    ((1.0, 0.0, 0.0), 7, (7, 0, 0)),
    ((5, 3, 2), 10, (5, 3, 2)),
])
def test_split_counts(splits, n, expected):
  assert tuple(ms.split_counts(splits, n).values()) == expected


@pytest.mark.parametrize("splits", [(0.5, 0.5), (0.8, 0.1, 0.2), (5, 3, 3), (-1, 6, 5)])
def test_split_counts_rejects(splits):
  with pytest.raises(ValueError, match="split"):
    ms.split_counts(splits, 10)


def test_refuses_a_non_empty_dir_unless_overwrite(tmp_path):
  first = ms.make_sample(tmp_path, num_images=6, seed=1, image_size=64, splits=(4, 1, 1))
  first_ids = {r["ImageID"] for r in read_rows(first.metadata["train"])}
  with pytest.raises(FileExistsError):
    ms.make_sample(tmp_path, num_images=6, seed=1, image_size=64, splits=(4, 1, 1))
  second = ms.make_sample(tmp_path, num_images=6, seed=2, image_size=64, splits=(4, 1, 1),
                          overwrite=True)
  ids = {r["ImageID"] for r in read_rows(second.metadata["train"])}
  assert {p.stem for p in (tmp_path / "train").glob("*.jpg")} == ids
  assert not ids & first_ids  # The first sample's images are gone.


def test_cli_writes_and_summarizes(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "oi_models.datasets.make_sample", f"--out_dir={tmp_path / 's'}",
       "--splits=6,2,2", "--image_size=64", "--seed=4"],
      capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert re.search(r"train\s+6\s", done.stdout) and re.search(r"total\s+10\s", done.stdout)
  assert len(list((tmp_path / "s" / "validation").glob("*.jpg"))) == 2
  bad = subprocess.run(
      [sys.executable, "-m", "oi_models.datasets.make_sample", f"--out_dir={tmp_path / 't'}",
       "--splits=6,2,2", "--num_images=5"], capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "sum to 10, not 5" in bad.stderr
  again = subprocess.run(  # The message names the flag, not the Python argument.
      [sys.executable, "-m", "oi_models.datasets.make_sample", f"--out_dir={tmp_path / 's'}",
       "--splits=6,2,2", "--image_size=64"], capture_output=True, text=True, timeout=300)
  assert again.returncode == 1 and "pass --overwrite" in again.stderr
  assert "overwrite=True" not in again.stderr
