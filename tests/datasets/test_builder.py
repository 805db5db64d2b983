"""Tests of the TFDS builder `open_images` on the sample maker's download, laid out per release.

Every test builds into its own data_dir from one module-scoped sample (12 images), so the suite stays
fast; the expected values come from the CSV files themselves, read with the csv module.
"""

import csv
import io
import json
import pathlib
import re
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import oi_models.datasets  # pylint: disable=unused-import  # Registers open_images.
from oi_models.datasets import builder
from oi_models.datasets import builder_images
from oi_models.dataloaders import detection_input
from oi_models.dataloaders import examples as examples_lib
from oi_models.datasets import make_sample
from oi_models.datasets import releases

SPLIT_SIZES = (8, 2, 2)
_FLAG_COLUMNS = {"is_occluded": "IsOccluded", "is_truncated": "IsTruncated",
                 "is_group_of": "IsGroupOf", "is_depiction": "IsDepiction", "is_inside": "IsInside"}


def _rows(path):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def _write_rows(path, rows):
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  return make_sample.make_sample(tmp_path_factory.mktemp("sample"), num_images=sum(SPLIT_SIZES),
                                 splits=SPLIT_SIZES)


def _copy(sample_info, dest: pathlib.Path, image_folders=True) -> pathlib.Path:
  """A writable copy of the V6 sample (images copied, so tests may damage them)."""
  shutil.copytree(sample_info.root, dest, ignore=None if image_folders else
                  shutil.ignore_patterns(*make_sample.SPLITS))
  return dest


# Sample file -> the name it has in each other release's layout (None: left out).
def _release_names(release):
  names = {make_sample.CLASS_LIST: "class-descriptions-boxable.csv",
           make_sample.HIERARCHY: "bbox_labels_600_hierarchy.json"}
  if release in ("v4", "v5"):
    names[make_sample.CLASS_DESCRIPTIONS] = "class-descriptions.csv"
    for split in make_sample.SPLITS:
      names[make_sample.BOX_FILES[split]] = f"{split}-annotations-bbox.csv"
      names[make_sample.LABEL_FILES[split]] = f"{split}-annotations-human-imagelabels-boxable.csv"
      names[make_sample.METADATA_FILES[split]] = make_sample.METADATA_FILES[split]
    if release == "v5":  # A split without its box file is simply not built.
      names[make_sample.BOX_FILES["test"]] = None
  elif release == "v7":
    names[make_sample.CLASS_LIST] = "oidv7-class-descriptions-boxable.csv"
    names[make_sample.CLASS_DESCRIPTIONS] = "oidv7-class-descriptions.csv"
    for split, short in zip(make_sample.SPLITS, ("train", "val", "test")):
      names[make_sample.BOX_FILES[split]] = make_sample.BOX_FILES[split]
      names[make_sample.LABEL_FILES[split]] = f"oidv7-{short}-annotations-human-imagelabels.csv"
      names[make_sample.METADATA_FILES[split]] = make_sample.METADATA_FILES[split]
  elif release == "challenge2019":
    names = {make_sample.CLASS_LIST: "challenge-2019-classes-description-500.csv",
             make_sample.HIERARCHY: "challenge-2019-label500-hierarchy.json"}
    for split in ("train", "validation"):
      names[make_sample.BOX_FILES[split]] = f"challenge-2019-{split}-detection-bbox.csv"
      names[make_sample.LABEL_FILES[split]] = \
          f"challenge-2019-{split}-detection-human-imagelabels.csv"
      names[make_sample.METADATA_FILES[split]] = make_sample.METADATA_FILES[split]
  return names


@pytest.fixture(scope="module")
def large_sample(tmp_path_factory):
  """A tiny sample whose images exceed both resize policies (long side 1300, >= 1.2 Mpixels)."""
  return make_sample.make_sample(tmp_path_factory.mktemp("large_sample"), num_images=4,
                                 image_size=1300, splits=(2, 1, 1))


_CHALLENGE_BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")


def _challenge_boxes(source: pathlib.Path, dest: pathlib.Path) -> None:
  """The Challenge 2019 box format (7 columns) of a sample box file, row for row."""
  rows = _rows(source)
  with open(dest, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(_CHALLENGE_BOX_COLUMNS)
    writer.writerows([[r[c] for c in _CHALLENGE_BOX_COLUMNS] for r in rows])


@pytest.fixture(scope="module")
def release_dirs(large_sample, tmp_path_factory):
  """manual_dir per release: the large sample's files under that release's official names (symlinks;
  Challenge 2019 box files rewritten in their own 7 columns)."""
  sample = large_sample
  dirs = {"v6": sample.root}
  for release in ("v4", "v5", "v7", "challenge2019"):
    root = tmp_path_factory.mktemp(f"manual_{release}")
    for source, name in _release_names(release).items():
      if name and release == "challenge2019" and name.endswith("-detection-bbox.csv"):
        _challenge_boxes(sample.root / source, root / name)
      elif name:
        (root / name).symlink_to(sample.root / source)
    for split in make_sample.SPLITS:
      (root / split).symlink_to(sample.root / split, target_is_directory=True)
    dirs[release] = root
  return dirs


def _prepare(manual_dir, data_dir, config, beam_runner=None, file_format=None):
  ds_builder = builder.OpenImages(config=config, data_dir=str(data_dir), file_format=file_format)
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), beam_runner=beam_runner))
  return ds_builder


def _examples(ds_builder, split):
  """ImageID -> example as numpy, the image left encoded (so bytes can be compared)."""
  ds = ds_builder.as_dataset(split, decoders={"image": tfds.decode.SkipDecoding()})
  return {ex["image/id"].decode(): ex for ex in tfds.as_numpy(ds)}


def _all_examples(ds_builder):
  return {split: _examples(ds_builder, split) for split in ds_builder.info.splits}


@pytest.fixture(scope="module")
def v6_original(sample, tmp_path_factory):
  ds_builder = _prepare(sample.root, tmp_path_factory.mktemp("data"), "v6_original")
  return ds_builder, _all_examples(ds_builder)


@pytest.mark.parametrize("release", list(releases.RELEASES))
@pytest.mark.parametrize("policy", builder_images.POLICIES)
def test_every_config_builds_the_sample(release, policy, release_dirs, large_sample, tmp_path):
  """Every config on images that need resizing (1300 px long side, > 1.2 Mpixels)."""
  sample = large_sample
  ds_builder = _prepare(release_dirs[release], tmp_path, f"{release}_{policy}")
  expected_splits = {"v5": ("train", "validation"), "challenge2019": ("train", "validation")}.get(
      release, make_sample.SPLITS)
  assert set(ds_builder.info.splits) == set(expected_splits)
  boxable = [row[0] for row in csv.reader(open(sample.class_list, encoding="utf-8"))]
  assert ds_builder.info.features["objects"]["label"].names == boxable
  metadata = ds_builder.info.metadata
  assert metadata["release"] == release
  assert len(metadata["boxable_class_names"]) == len(boxable)
  assert json.loads(metadata["hierarchy"])["LabelName"] == "/m/0bl9f"
  for split in expected_splits:
    examples = _examples(ds_builder, split)
    counts = sample.counts[split]
    assert len(examples) == counts.images
    assert sum(len(ex["objects"]["label"]) for ex in examples.values()) == counts.boxes
    # Challenge 2019 has one 500-class list: the sample's scene (not boxable) labels are unknown.
    label_rows = _rows(sample.image_labels[split])
    known = [r for r in label_rows if release != "challenge2019" or r["LabelName"] in boxable]
    assert len(label_rows) == counts.positives + counts.negatives
    assert sum(len(ex["image_labels"]["label"]) for ex in examples.values()) == len(known)
    report = metadata["build_report"][split]["counts"]
    assert report.get("image_labels/skipped_by_reader/unknown MID", 0) == len(label_rows) - len(known)
    assert report["images/written"] == report["images/listed"] == counts.images
    assert report.get("images/changed/resized", 0) == (0 if policy == "original" else counts.images)
    boxes = {}
    for row in _rows(sample.boxes[split]):
      boxes.setdefault(row["ImageID"], []).append(row)
    for image_id, ex in examples.items():
      path = sample.image_dirs[split] / f"{image_id}.jpg"
      source = Image.open(path)
      assert max(source.size) == 1300 and source.size[0] * source.size[1] > 1_200_000
      image = Image.open(io.BytesIO(ex["image"]))
      assert (ex["image/original_width"], ex["image/original_height"]) == source.size
      if policy == "original":
        assert ex["image"] == path.read_bytes()
      elif policy == "max1024":  # Long side 1024, the other scaled with it.
        assert image.format == "JPEG" and max(image.size) == 1024
        scale = 1024 / max(source.size)
        assert abs(min(image.size) - min(source.size) * scale) <= 0.5
      else:  # 300k: the largest size of the same aspect within 300,000 pixels.
        assert image.format == "JPEG" and image.size[0] * image.size[1] <= 300_000
        scale = (300_000 / (source.size[0] * source.size[1])) ** 0.5
        assert all(s * scale - 1.5 < t <= s * scale for s, t in zip(source.size, image.size))
      rows = boxes.get(image_id, [])
      objects = ex["objects"]
      assert [boxable[i] for i in objects["label"]] == [r["LabelName"] for r in rows]
      np.testing.assert_allclose(  # Normalized boxes do not change with the image size.
          objects["bbox"], np.array([[float(r[k]) for k in ("YMin", "XMin", "YMax", "XMax")]
                                     for r in rows], np.float32).reshape(-1, 4), atol=1e-6)
      assert objects["is_group_of"].tolist() == [int(r["IsGroupOf"]) for r in rows]
      if release == "challenge2019":  # 7 columns: no Source, no other flag (-1, unknown).
        assert set(objects["is_occluded"].tolist()) <= {-1} and set(objects["source"]) <= {b""}
      else:
        assert objects["is_occluded"].tolist() == [int(r["IsOccluded"]) for r in rows]


def test_challenge_box_files_have_the_official_columns(release_dirs, shared):
  real = shared("annotations", "doc_excerpts", "challenge2019_validation-detection-bbox_head4.csv")
  ours = release_dirs["challenge2019"] / "challenge-2019-validation-detection-bbox.csv"
  assert ours.read_text().splitlines()[0] == real.read_text().splitlines()[0]


def test_examples_match_the_csv_files(v6_original, sample):
  ds_builder, by_split = v6_original
  box_names = ds_builder.info.features["objects"]["label"].names
  label_names = ds_builder.info.features["image_labels"]["label"].names
  for split, examples in by_split.items():
    boxes, labels = {}, {}
    for row in _rows(sample.boxes[split]):
      boxes.setdefault(row["ImageID"], []).append(row)
    for row in _rows(sample.image_labels[split]):
      labels.setdefault(row["ImageID"], []).append(row)
    assert set(examples) == {row["ImageID"] for row in _rows(sample.metadata[split])}
    for image_id, ex in examples.items():
      path = sample.image_dirs[split] / f"{image_id}.jpg"
      assert ex["image"] == path.read_bytes()  # Fits the policy: original bytes kept.
      assert (ex["image/original_width"], ex["image/original_height"]) == Image.open(path).size
      rows = boxes.get(image_id, [])
      objects = ex["objects"]
      assert [box_names[i] for i in objects["label"]] == [r["LabelName"] for r in rows]
      np.testing.assert_allclose(
          objects["bbox"], np.array([[float(r[k]) for k in ("YMin", "XMin", "YMax", "XMax")]
                                     for r in rows], np.float32).reshape(-1, 4), atol=1e-6)
      for flag, column in _FLAG_COLUMNS.items():
        assert objects[flag].tolist() == [int(r[column]) for r in rows]
      assert [s.decode() for s in objects["source"]] == [r["Source"] for r in rows]
      rows = labels.get(image_id, [])
      assert [label_names[i] for i in ex["image_labels"]["label"]] == [r["LabelName"] for r in rows]
      assert ex["image_labels"]["confidence"].tolist() == [float(r["Confidence"]) for r in rows]


def test_build_report_is_written_next_to_the_dataset(v6_original):
  ds_builder, _ = v6_original
  on_disk = json.loads((ds_builder.data_path / builder.REPORT_FILE).read_text())
  assert on_disk == ds_builder.info.metadata["build_report"]
  reloaded = tfds.builder("open_images/v6_original", data_dir=ds_builder.data_dir.split(
      "/open_images/")[0])
  assert reloaded.info.metadata["build_report"] == on_disk
  assert reloaded.info.features["objects"]["label"].names == \
      ds_builder.info.features["objects"]["label"].names


def _tar(path, members, mode):
  with tarfile.open(path, mode) as archive:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))


def _tar_download(sample, dest: pathlib.Path, with_metadata: bool = True) -> pathlib.Path:
  """The sample with its images in official-style tar files (train in two, one gzipped); the first
  train image also has another spelling `.jpeg`, before its official name, holding another image."""
  manual = _copy(sample, dest, image_folders=False)
  if not with_metadata:  # Then the tar files list the images.
    for path in make_sample.METADATA_FILES.values():
      (manual / path).unlink()
  train = sorted(sample.image_dirs["train"].glob("*.jpg"))
  half = len(train) // 2
  other = (f"train_0/{train[0].stem}.jpeg", train[1].read_bytes())
  _tar(manual / "train_0.tar", [other] + [(f"train_0/{p.name}", p.read_bytes())
                                          for p in train[:half]], "w")
  _tar(manual / "train_1.tar.gz", [(f"train_1/{p.name}", p.read_bytes()) for p in train[half:]],
       "w:gz")
  for split in ("validation", "test"):
    _tar(manual / f"{split}.tar", [(f"{split}/{p.name}", p.read_bytes())
                                   for p in sorted(sample.image_dirs[split].glob("*.jpg"))], "w")
  return manual


@pytest.mark.parametrize("with_metadata", [True, False])
def test_tar_files_give_the_same_examples_as_folders(v6_original, sample, tmp_path, with_metadata,
                                                     monkeypatch):
  manual = _tar_download(sample, tmp_path / "manual", with_metadata)
  opened = []  # Each archive is streamed once, with or without a metadata file to list the images.
  real_iter_tar = builder_images.iter_tar
  monkeypatch.setattr(builder_images, "iter_tar",
                      lambda path, *a, **k: (opened.append(path.name), real_iter_tar(path, *a, **k))[1])
  ds_builder = _prepare(manual, tmp_path / "data", "v6_original")
  assert sorted(opened) == ["test.tar", "train_0.tar", "train_1.tar.gz", "validation.tar"]
  got = _all_examples(ds_builder)
  assert ds_builder.info.metadata["build_report"]["train"]["counts"]["images/duplicate_file"] == 1
  _, want = v6_original
  assert got.keys() == want.keys()
  for split in want:
    assert got[split].keys() == want[split].keys()
    for image_id, ex in want[split].items():
      tf.nest.map_structure(np.testing.assert_array_equal, got[split][image_id], ex)


def test_tar_files_in_one_pass_with_a_class_filter_equal_folders(sample, tmp_path):
  """No metadata file and no image limit: tar files are read once, the class filter on the way."""
  boxable = [row[0] for row in csv.reader(open(sample.class_list, encoding="utf-8"))]
  config = builder.make_config("v6", "original", classes=boxable[:2])
  folders = _copy(sample, tmp_path / "folders")
  tars = _copy(sample, tmp_path / "tars", image_folders=False)
  for split in make_sample.SPLITS:
    (folders / make_sample.METADATA_FILES[split]).unlink()
    (tars / make_sample.METADATA_FILES[split]).unlink()
    _tar(tars / f"{split}.tar", [(f"{split}/{p.name}", p.read_bytes())
                                 for p in sorted(sample.image_dirs[split].glob("*.jpg"))], "w")
  want_builder = _prepare(folders, tmp_path / "data_folders", config)
  got_builder = _prepare(tars, tmp_path / "data_tars", config)
  want, got = _all_examples(want_builder), _all_examples(got_builder)
  assert got.keys() == want.keys() and sum(len(e) for e in want.values()) > 0
  for split in want:
    assert got[split].keys() == want[split].keys()
    for image_id, ex in want[split].items():
      tf.nest.map_structure(np.testing.assert_array_equal, got[split][image_id], ex)
  for split in make_sample.SPLITS:
    assert got_builder.info.metadata["build_report"][split]["counts"] == \
        want_builder.info.metadata["build_report"][split]["counts"]
  assert want_builder.info.metadata["build_report"]["train"]["counts"][
      "images/dropped/no_selected_class"] > 0


def test_damaged_tar_and_stray_files_are_counted_and_printed(sample, tmp_path):
  manual = _copy(sample, tmp_path / "manual")
  shutil.rmtree(manual / "validation")
  images = sorted(sample.image_dirs["validation"].glob("*.jpg"))
  _tar(manual / "validation.tar", [(f"validation/{p.name}", p.read_bytes()) for p in images]
       + [("validation/ffffffffffffffff.jpg", b"not listed")], "w")
  # Cut inside the second image's data: the first stands, the second is missing.
  first = len(images[0].read_bytes())
  (manual / "validation.tar").write_bytes((manual / "validation.tar").read_bytes()[:first + 1024 + 600])
  (manual / "train" / "ffffffffffffffff.jpg").write_bytes(b"not listed either")
  ds_builder = _prepare(manual, tmp_path / "data", "v6_original")
  report = ds_builder.info.metadata["build_report"]
  assert report["validation"]["counts"]["images/corrupt_tar"] == 1
  assert report["validation"]["counts"]["images/dropped/missing_image"] == 1
  assert report["train"]["counts"]["images/unlisted_file"] == 1
  text = builder.summarize_report(report)
  blocks = dict(re.findall(r"^(\w+): [^\n]*\n((?:  [^\n]*\n?)*)", text, re.M))
  assert set(blocks) == set(report)
  for split, entry in report.items():  # Every non-zero counter is printed, under its split.
    block = "\n" + blocks[split]
    for name, n in entry["counts"].items():
      if name not in ("images/listed", "images/written", "boxes/written", "image_labels/written"):
        assert f"\n  {name}: {n}" in block, (split, name)
  assert "  images/corrupt_tar: 1" in text and "  images/unlisted_file: 1" in text


@pytest.mark.parametrize("with_metadata", [True, False])
def test_flat_folder_of_the_official_downloader(v6_original, sample, tmp_path, with_metadata):
  """downloader.py's layout: every split's images as `<ImageID>.jpg` in one folder."""
  manual = _flat_download(sample, tmp_path / "manual", with_metadata)
  ds_builder = _prepare(manual, tmp_path / "data", "v6_original")
  got = _all_examples(ds_builder)
  _, want = v6_original
  assert got.keys() == want.keys()
  for split in want:
    assert got[split].keys() == want[split].keys()
    for image_id, ex in want[split].items():
      tf.nest.map_structure(np.testing.assert_array_equal, got[split][image_id], ex)
    counts = ds_builder.info.metadata["build_report"][split]["counts"]
    assert counts["images/listed"] == counts["images/written"] == sample.counts[split].images
    assert "images/unlisted_file" not in counts  # The other splits' images are not strays.


@pytest.mark.parametrize("case", ["empty", "duplicate_mid"])
def test_bad_class_list_is_refused(sample, tmp_path, case):
  manual = _copy(sample, tmp_path / "manual", image_folders=False)
  text = (manual / make_sample.CLASS_LIST).read_text()
  first = text.splitlines()[0]
  (manual / make_sample.CLASS_LIST).write_text("" if case == "empty" else text + first + "\n")
  says = "holds no class" if case == "empty" else f"MID {first.split(',')[0]} appears twice"
  with pytest.raises(builder.BuildError, match=f"boxable class list.*{says}"):
    _prepare(manual, tmp_path / "data", "v6_original")


@pytest.mark.parametrize("case", ["typo", "top_level_list"])
def test_hierarchy_that_does_not_fit_the_class_list_is_refused(sample, tmp_path, case):
  manual = _copy(sample, tmp_path / "manual", image_folders=False)
  text = (manual / make_sample.HIERARCHY).read_text()
  mid = next(row[0] for row in csv.reader(open(sample.class_list, encoding="utf-8")))
  assert f'"{mid}"' in text
  bad = text.replace(f'"{mid}"', '"/m/0typo"') if case == "typo" else f"[{text}]"
  (manual / make_sample.HIERARCHY).write_text(bad)
  with pytest.raises(builder.BuildError, match="class hierarchy: .*" + make_sample.HIERARCHY) as e:
    _prepare(manual, tmp_path / "data", "v6_original")
  if case == "typo":
    assert "/m/0typo" in str(e.value) and mid in str(e.value)


def test_split_left_without_examples_is_not_built_and_is_reported(sample, tmp_path):
  manual = _copy(sample, tmp_path / "manual")
  for path in (manual / "validation").glob("*.jpg"):
    path.unlink()
  ds_builder = _prepare(manual, tmp_path / "data", "v6_original")
  assert set(ds_builder.info.splits) == {"train", "test"}
  counts = ds_builder.info.metadata["build_report"]["validation"]["counts"]
  assert counts["images/dropped/missing_image"] == SPLIT_SIZES[1]
  assert counts["split_not_built_no_examples"] == 1


def test_classes_option_keeps_only_those_classes_and_images(release_dirs, sample, tmp_path):
  boxable = [row for row in csv.reader(open(sample.class_list, encoding="utf-8"))]
  wanted = (boxable[1][1].upper(), boxable[3][0])  # A display name (any case) and a MID.
  mids = {boxable[1][0], boxable[3][0]}
  config = builder.make_config("v6", "original", classes=wanted)
  assert config.name.startswith("v6_original_cls")
  ds_builder = _prepare(sample.root, tmp_path, config)
  names = ds_builder.info.features["objects"]["label"].names
  assert set(names) == mids and names == [m for m, _ in boxable if m in mids]
  for split in make_sample.SPLITS:
    expected = {r["ImageID"] for r in _rows(sample.boxes[split]) if r["LabelName"] in mids}
    expected |= {r["ImageID"] for r in _rows(sample.image_labels[split])
                 if r["LabelName"] in mids and float(r["Confidence"]) == 1}
    examples = _examples(ds_builder, split) if split in ds_builder.info.splits else {}
    assert set(examples) == expected
    counts = ds_builder.info.metadata["build_report"][split]["counts"]
    assert counts.get("images/dropped/no_selected_class", 0) == sample.counts[split].images - len(
        expected)
    kept_boxes = sum(r["LabelName"] in mids and r["ImageID"] in expected
                     for r in _rows(sample.boxes[split]))
    assert sum(len(ex["objects"]["label"]) for ex in examples.values()) == kept_boxes
  with pytest.raises(ValueError, match="Unicorn"):
    _prepare(sample.root, tmp_path / "bad", builder.make_config("v6", "original", ["Unicorn"]))


def test_max_images_per_split_takes_the_smallest_image_ids(sample, tmp_path):
  ds = tfds.load("open_images/v6_300k_n3", split="train", data_dir=str(tmp_path),
                 download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
                     manual_dir=str(sample.root))})
  ids = sorted(ex["image/id"].decode() for ex in tfds.as_numpy(ds))
  assert ids == sorted(r["ImageID"] for r in _rows(sample.metadata["train"]))[:3]
  ds_builder = tfds.builder("open_images/v6_300k_n3", data_dir=str(tmp_path))
  assert ds_builder.info.splits["validation"].num_examples == 2
  counts = ds_builder.info.metadata["build_report"]["train"]["counts"]
  assert counts["images/dropped/over_max_images"] == SPLIT_SIZES[0] - 3


def test_config_names_round_trip():
  config = builder.make_config("v7", "300k", max_images_per_split=10, with_machine_labels=True)
  assert config.name == "v7_300k_machine_n10"
  assert builder.parse_config_name("v7_300k_machine_n10") is config
  assert builder.parse_config_name("challenge2019_max1024").release == "challenge2019"
  assert builder.parse_config_name("v6_small") is None
  assert len(builder.OpenImages.BUILDER_CONFIGS) == 15
  assert "oidv6-train-annotations-bbox.csv" in builder.OpenImages.MANUAL_DOWNLOAD_INSTRUCTIONS


@pytest.fixture(scope="module")
def bad_download(sample, tmp_path_factory):
  """The sample with one of each kind of bad data in its train split; returns (dir, what-is-where)."""
  root = _copy(sample, tmp_path_factory.mktemp("bad") / "manual")
  ids = sorted(p.stem for p in (root / "train").glob("*.jpg"))
  folder = root / "train"
  good = {i: (folder / f"{i}.jpg").read_bytes() for i in ids}
  (folder / f"{ids[0]}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))
  (folder / f"{ids[1]}.jpg").write_bytes(good[ids[1]][:len(good[ids[1]]) // 2])
  image = Image.open(io.BytesIO(good[ids[2]]))
  for i, (mode, fmt) in zip(ids[2:5], (("CMYK", "JPEG"), ("L", "JPEG"), ("RGB", "PNG"))):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(good[i])).convert(mode).save(buffer, fmt)
    (folder / f"{i}.jpg").write_bytes(buffer.getvalue())
  del image
  (folder / f"{ids[5]}.jpg").unlink()
  boxes = _rows(root / make_sample.BOX_FILES["train"])
  absent = dict(boxes[0], ImageID="ffffffffffffffff")
  unknown = dict(next(r for r in boxes if r["ImageID"] == ids[6]), LabelName="/m/not_a_class")
  _write_rows(root / make_sample.BOX_FILES["train"], boxes + [absent, unknown])
  labels = _rows(root / make_sample.LABEL_FILES["train"])
  half = dict(next(r for r in labels if r["ImageID"] == ids[7]), Confidence="0.5")  # Not human.
  _write_rows(root / make_sample.LABEL_FILES["train"],
              labels + [dict(labels[0], ImageID=ids[6], LabelName="/m/not_a_class"), half])
  # Two files of one image: the official name wins over `.jpeg`, whatever the listing order.
  (folder / f"{ids[7]}.jpeg").write_bytes(good[ids[6]])
  # Validation: a broken link, and a folder named like an image beside the real `.jpeg` file.
  val = sorted(p.stem for p in (root / "validation").glob("*.jpg"))
  (root / "validation" / f"{val[0]}.jpg").unlink()
  (root / "validation" / f"{val[0]}.jpg").symlink_to(root / "validation" / "gone.jpg")
  (root / "validation" / f"{val[1]}.jpg").rename(root / "validation" / f"{val[1]}.jpeg")
  (root / "validation" / f"{val[1]}.jpg").mkdir()
  return root, ids


@pytest.fixture(scope="module")
def bad_build(bad_download, tmp_path_factory):
  root, _ = bad_download
  ds_builder = _prepare(root, tmp_path_factory.mktemp("bad_data"), "v6_max1024")
  return ds_builder, _all_examples(ds_builder)


def test_bad_data_is_counted_with_reasons(bad_build, bad_download, sample):
  ds_builder, by_split = bad_build
  root, ids = bad_download
  counts = ds_builder.info.metadata["build_report"]["train"]["counts"]
  assert counts["images/dropped/corrupt_image"] == 1
  assert counts["images/dropped/truncated_image"] == 1
  assert counts["images/dropped/missing_image"] == 1
  assert counts["images/changed/converted_cmyk"] == 1
  assert counts["images/changed/converted_l"] == 1
  assert counts["images/changed/converted_png"] == 1
  assert counts["boxes/dropped/row_for_absent_image"] == 1
  assert counts["boxes/skipped_by_reader/unknown MID"] == 1
  assert counts["image_labels/skipped_by_reader/unknown MID"] == 1
  assert counts["image_labels/dropped/confidence_not_0_or_1"] == 1
  examples = ds_builder.info.metadata["build_report"]["train"]["examples"]
  assert str(root / "train" / f"{ids[0]}.jpg") in examples["images/dropped/corrupt_image"][0]
  assert "BytesIO" not in json.dumps(examples)
  assert 0.5 not in by_split["train"][ids[7]]["image_labels"]["confidence"]
  assert counts["images/duplicate_file"] == 1
  assert by_split["train"][ids[7]]["image"] == (sample.image_dirs["train"] / f"{ids[7]}.jpg"
                                                ).read_bytes()
  assert set(by_split["train"]) == set(ids) - {ids[0], ids[1], ids[5]}
  assert counts["images/written"] == SPLIT_SIZES[0] - 3
  for kind in ("boxes", "image_labels"):  # Every row of the files is accounted for.
    dropped = sum(n for name, n in counts.items() if name.startswith(f"{kind}/dropped/"))
    skipped = sum(n for name, n in counts.items() if name.startswith(f"{kind}/skipped_by_reader/"))
    assert counts[f"{kind}/read"] == counts[f"{kind}/written"] + dropped
    assert counts[f"{kind}/rows_in_file"] == counts[f"{kind}/read"] + skipped
  boxes_of = {i: sum(r["ImageID"] == i for r in _rows(sample.boxes["train"])) for i in ids}
  assert counts["boxes/dropped/image_dropped"] == boxes_of[ids[0]] + boxes_of[ids[1]] + \
      boxes_of[ids[5]]
  for i in ids[2:5]:  # Converted images are RGB JPEGs of the same size.
    image = Image.open(io.BytesIO(by_split["train"][i]["image"]))
    assert (image.format, image.mode) == ("JPEG", "RGB")
    assert image.size == Image.open(sample.image_dirs["train"] / f"{i}.jpg").size
  val = sorted(p.stem for p in sample.image_dirs["validation"].glob("*.jpg"))
  counts = ds_builder.info.metadata["build_report"]["validation"]["counts"]
  assert counts["images/dropped/unreadable_file"] == 1 and counts["images/duplicate_file"] == 1
  assert "gone.jpg" not in str(ds_builder.info.metadata["build_report"]["validation"]["examples"])
  assert f"{val[0]}.jpg" in ds_builder.info.metadata["build_report"]["validation"]["examples"][
      "images/dropped/unreadable_file"][0]
  assert set(by_split["validation"]) == {val[1]}  # From its `.jpeg` file, not the folder.
  assert by_split["validation"][val[1]]["image"] == (
      sample.image_dirs["validation"] / f"{val[1]}.jpg").read_bytes()


def test_rotated_image_and_its_boxes_come_out_upright(sample, v6_original, tmp_path):
  manual = _copy(sample, tmp_path / "manual")
  image_id = sorted(p.stem for p in (manual / "validation").glob("*.jpg"))[0]
  path = manual / "validation" / f"{image_id}.jpg"
  upright = np.asarray(Image.open(path))
  # Stored turned 90 degrees clockwise, with Rotation 90: it must be turned back counterclockwise.
  buffer = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=-1))).save(buffer, "JPEG", quality=95)
  path.write_bytes(buffer.getvalue())
  meta = _rows(manual / make_sample.METADATA_FILES["validation"])
  for row in meta:
    if row["ImageID"] == image_id:
      row["Rotation"] = "90.0"
  _write_rows(manual / make_sample.METADATA_FILES["validation"], meta)
  boxes = _rows(manual / make_sample.BOX_FILES["validation"])
  for row in boxes:  # Box coordinates as annotators saw the stored (sideways) image.
    if row["ImageID"] == image_id:
      y0, x0, y1, x1 = builder_images.rotate_boxes(
          [[float(row[k]) for k in ("YMin", "XMin", "YMax", "XMax")]], 270)[0]
      row.update(YMin=repr(float(y0)), XMin=repr(float(x0)), YMax=repr(float(y1)),
                 XMax=repr(float(x1)))
  _write_rows(manual / make_sample.BOX_FILES["validation"], boxes)
  ds_builder = _prepare(manual, tmp_path / "data", "v6_original")
  got = _examples(ds_builder, "validation")[image_id]
  want = v6_original[1]["validation"][image_id]
  np.testing.assert_allclose(got["objects"]["bbox"], want["objects"]["bbox"], atol=1e-5)
  assert (got["image/original_width"], got["image/original_height"]) == (upright.shape[1],
                                                                          upright.shape[0])
  pixels = np.asarray(Image.open(io.BytesIO(got["image"]))).astype(int)
  assert pixels.shape == upright.shape
  assert np.abs(pixels - upright).mean() < 3
  counts = ds_builder.info.metadata["build_report"]["validation"]["counts"]
  assert counts["images/changed/rotated_90"] == 1


def test_real_photos_and_annotation_excerpts(shared, tmp_path):
  """22 real train photos (no metadata file: the folder lists them) with real V5-named files."""
  photos = shared("images", "train_2018_pyaf")
  excerpts = shared("annotations", "doc_excerpts")
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "train").symlink_to(photos, target_is_directory=True)
  for source, name in (
      (shared("class_lists", "class-descriptions-boxable.csv"), "class-descriptions-boxable.csv"),
      (shared("class_lists", "class-descriptions.csv"), "class-descriptions.csv"),
      (shared("hierarchy", "bbox_labels_600_hierarchy.json"), "bbox_labels_600_hierarchy.json"),
      (excerpts / "v6_oidv6-train-annotations-bbox_head3.csv", "train-annotations-bbox.csv"),
      (excerpts / "v6_train-annotations-human-imagelabels-boxable_head4.csv",
       "train-annotations-human-imagelabels-boxable.csv"),
      (excerpts / "v3_annotations-machine_head9.csv", "train-annotations-machine-imagelabels.csv")):
    (manual / name).symlink_to(source)
  config = builder.make_config("v5", "300k", with_machine_labels=True)
  ds_builder = _prepare(manual, tmp_path / "data", config)
  examples = _examples(ds_builder, "train")
  assert set(examples) == {p.stem for p in photos.glob("*.jpg")}
  for image_id, ex in examples.items():
    image = Image.open(io.BytesIO(ex["image"]))
    assert image.mode == "RGB" and image.size[0] * image.size[1] <= builder_images.MAX_PIXELS
    assert (ex["image/original_width"], ex["image/original_height"]) == \
        Image.open(photos / f"{image_id}.jpg").size
  names = ds_builder.info.features["machine_labels"]["label"].names
  machine = [r for r in _rows(excerpts / "v3_annotations-machine_head9.csv")
             if r["ImageID"] == "000002b97e5471a0"]
  got = examples["000002b97e5471a0"]["machine_labels"]
  assert [names[i] for i in got["label"]] == [r["LabelName"] for r in machine]
  np.testing.assert_allclose(got["confidence"], [float(r["Confidence"]) for r in machine])
  counts = ds_builder.info.metadata["build_report"]["train"]["counts"]
  assert counts["images/changed/converted_l"] == 1
  assert counts["boxes/dropped/row_for_absent_image"] == 3  # Boxes of 000002b66c9c498e: no photo.
  assert counts["image_labels/dropped/row_for_absent_image"] == 4
  other_machine = sum(r["ImageID"] != "000002b97e5471a0"
                      for r in _rows(excerpts / "v3_annotations-machine_head9.csv"))
  skipped = sum(n for k, n in counts.items() if k.startswith("machine_labels/skipped_by_reader/"))
  assert counts["machine_labels/dropped/row_for_absent_image"] + skipped == other_machine


def test_pipeline_reads_a_built_dataset(v6_original):
  ds_builder, by_split = v6_original
  decoder = detection_input.Decoder.from_features(ds_builder.info.features)
  parser = detection_input.Parser(short_side=160, long_side=256, rpn_targets=False)
  stream = examples_lib.load(ds_builder, "train")
  batches = detection_input.dataset(stream, decoder, parser, is_training=False, batch_size=4)
  seen = 0
  for images, labels in batches:
    assert images.shape[1:] == (256, 256, 3)
    groundtruths = labels["groundtruths"]
    for source_id, num in zip(groundtruths["source_id"].numpy(),
                              groundtruths["num_detections"].numpy()):
      image_id = f"{int(source_id) & (2**64 - 1):016x}"
      assert num == len(by_split["train"][image_id]["objects"]["label"])
      seen += 1
  assert seen == SPLIT_SIZES[0]


def _flat_download(sample, dest: pathlib.Path, with_metadata: bool) -> pathlib.Path:
  """The sample as downloader.py leaves it: every split's images in one folder `images/`."""
  manual = _copy(sample, dest, image_folders=False)
  (manual / "images").mkdir()
  for split in make_sample.SPLITS:
    for path in sample.image_dirs[split].glob("*.jpg"):
      (manual / "images" / path.name).symlink_to(path)
    if not with_metadata:  # Then a split's images are those its annotation files name.
      (manual / make_sample.METADATA_FILES[split]).unlink()
  return manual


@pytest.mark.parametrize("case", ["bad_data", "classes_and_limit", "flat_folder", "tars"])
def test_beam_build_equals_the_plain_build(case, bad_build, bad_download, sample, tmp_path):
  beam = pytest.importorskip("apache_beam")
  if case == "bad_data":
    manual, (plain_builder, plain) = bad_download[0], bad_build
    config = "v6_max1024"
  elif case in ("flat_folder", "tars"):
    manual = (_flat_download(sample, tmp_path / "manual", with_metadata=False) if case == "flat_folder"
              else _tar_download(sample, tmp_path / "manual"))  # With a duplicate file.
    config = "v6_original"
    plain_builder = _prepare(manual, tmp_path / "plain", config)
    plain = _all_examples(plain_builder)
  else:
    boxable = [row[0] for row in csv.reader(open(sample.class_list, encoding="utf-8"))]
    manual = sample.root
    config = builder.make_config("v6", "max1024", classes=boxable[:3], max_images_per_split=3)
    plain_builder = _prepare(manual, tmp_path / "plain", config)
    plain = _all_examples(plain_builder)
  beam_builder = _prepare(manual, tmp_path / "beam", config,
                          beam_runner=beam.runners.DirectRunner())
  got = _all_examples(beam_builder)
  assert got.keys() == plain.keys()
  for split in plain:
    assert got[split].keys() == plain[split].keys() and plain[split]
    for image_id, ex in plain[split].items():
      tf.nest.map_structure(np.testing.assert_array_equal, got[split][image_id], ex)
    assert beam_builder.info.metadata["build_report"][split]["counts"] == \
        plain_builder.info.metadata["build_report"][split]["counts"]
