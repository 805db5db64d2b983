"""Which official files make up each Open Images release, as a user downloads them into a manual_dir.

The TFDS builder cannot download Open Images (the images are hundreds of gigabytes and the files move
between hosts), so it reads a user's download. Each release names its files differently (V6 prefixed
the train files with `oidv6-`, V7 the image-level ones with `oidv7-`, the Challenge 2019 files carry
their own prefix), and mirrors and download tools rename a few of them. Here every role (boxes of a
split, human labels of a split, ...) lists the official name first and the known alternatives after;
the first that exists wins. A split whose box file is absent is not built.

Image files: a folder `<split>/<ImageID>.jpg` (as the CVDF/S3 mirrors unpack them; `val/` is accepted
for validation), the official tar files (`train_0.tar` .. `train_f.tar`, `validation.tar`, `test.tar`,
gzipped or not), read as streams, never unpacked, or one flat folder of every split's images, as the
official `downloader.py` writes them: it takes lines `<split>/<ImageID>` and saves each image as
`<download_folder>/<ImageID>.jpg`, without a split folder. That folder is `manual_dir/images` or
`manual_dir` itself; each split then takes its images from its image-metadata file, or, without one,
the images that have a box or a human-verified label in the split's files.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Mapping, Sequence

from oi_models.datasets import builder_images

SPLITS = ("train", "validation", "test")

# Short split names used in some official file names (V7 image-level labels: `oidv7-val-...`).
_SHORT = {"train": "train", "validation": "val", "test": "test"}

_ROTATION_FILES = {
    "train": ("train-images-boxable-with-rotation.csv",
              "oidv6-train-images-with-labels-with-rotation.csv", "train-images-with-rotation.csv"),
    "validation": ("validation-images-with-rotation.csv",),
    "test": ("test-images-with-rotation.csv",),
}

_HIERARCHY_600 = ("bbox_labels_600_hierarchy.json",)


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """Candidate file names of one split's annotations; each tuple is tried in order."""

  boxes: tuple[str, ...]
  human_labels: tuple[str, ...]
  machine_labels: tuple[str, ...]
  metadata: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Release:
  """Candidate file names of one release (see the module docstring for the lookup rule)."""

  name: str
  description: str
  boxable_classes: tuple[str, ...]
  image_level_classes: tuple[str, ...]
  hierarchy: tuple[str, ...]
  splits: Mapping[str, SplitFiles]

  def instructions(self) -> str:
    """Markdown lines listing this release's files, for MANUAL_DOWNLOAD_INSTRUCTIONS."""
    def names(candidates):
      first, *rest = candidates
      return f"`{first}`" + (f" (or {', '.join(f'`{r}`' for r in rest)})" if rest else "")

    lines = [f"* `{self.name}` ({self.description}):",
             f"  * boxable classes: {names(self.boxable_classes)}",
             f"  * image-level classes: {names(self.image_level_classes)}",
             f"  * hierarchy: {names(self.hierarchy)}"]
    for split, files in self.splits.items():
      lines.append(f"  * {split}: boxes {names(files.boxes)}; human labels "
                   f"{names(files.human_labels)}; image metadata with rotation (optional) "
                   f"{names(files.metadata)}; machine labels (only with_machine_labels) "
                   f"{names(files.machine_labels) if files.machine_labels else 'none'}")
    return "\n".join(lines)


def _split_files(split: str, boxes: Sequence[str], human: Sequence[str],
                 machine: Sequence[str]) -> SplitFiles:
  return SplitFiles(tuple(boxes), tuple(human), tuple(machine), _ROTATION_FILES[split])


def _v4_v5_split(split: str) -> SplitFiles:
  return _split_files(
      split, [f"{split}-annotations-bbox.csv"],
      [f"{split}-annotations-human-imagelabels-boxable.csv",
       f"{split}-annotations-human-imagelabels.csv"],
      [f"{split}-annotations-machine-imagelabels.csv"])


def _v6_v7_split(split: str, version: int) -> SplitFiles:
  prefix = f"oidv{version}-"
  if split == "train":
    boxes = ["oidv6-train-annotations-bbox.csv", "train-annotations-bbox.csv"]
  else:
    boxes = [f"{split}-annotations-bbox.csv"]
  human, machine = [], []
  if version == 7:
    human.append(f"{prefix}{_SHORT[split]}-annotations-human-imagelabels.csv")
    machine.append(f"{prefix}{_SHORT[split]}-annotations-machine-imagelabels.csv")
  if split == "train":
    human += ["oidv6-train-annotations-human-imagelabels.csv",
              "train-annotations-human-imagelabels-boxable.csv"]
    machine += ["oidv6-train-annotations-machine-imagelabels.csv",
                "train-annotations-machine-imagelabels.csv"]
  else:
    human += [f"{split}-annotations-human-imagelabels.csv",
              f"{split}-annotations-human-imagelabels-boxable.csv"]
    machine += [f"{split}-annotations-machine-imagelabels.csv"]
  return _split_files(split, boxes, human, machine)


def _challenge_split(split: str) -> SplitFiles:
  return _split_files(
      split, [f"challenge-2019-{split}-detection-bbox.csv"],
      [f"challenge-2019-{split}-detection-human-imagelabels.csv"], [])


RELEASES: dict[str, Release] = {
    "v4": Release(
        "v4", "Open Images V4, 2018", ("class-descriptions-boxable.csv",),
        ("class-descriptions.csv", "class-descriptions-boxable.csv"), _HIERARCHY_600,
        {s: _v4_v5_split(s) for s in SPLITS}),
    "v5": Release(
        "v5", "Open Images V5, 2019", ("class-descriptions-boxable.csv",),
        ("class-descriptions.csv", "class-descriptions-boxable.csv"), _HIERARCHY_600,
        {s: _v4_v5_split(s) for s in SPLITS}),
    "v6": Release(
        "v6", "Open Images V6, 2020", ("class-descriptions-boxable.csv",),
        ("oidv6-class-descriptions.csv", "class-descriptions.csv", "class-descriptions-boxable.csv"),
        _HIERARCHY_600, {s: _v6_v7_split(s, 6) for s in SPLITS}),
    "v7": Release(
        "v7", "Open Images V7, 2022", ("oidv7-class-descriptions-boxable.csv",
                                       "class-descriptions-boxable.csv"),
        ("oidv7-class-descriptions.csv", "oidv6-class-descriptions.csv", "class-descriptions.csv",
         "class-descriptions-boxable.csv"),
        _HIERARCHY_600, {s: _v6_v7_split(s, 7) for s in SPLITS}),
    "challenge2019": Release(
        "challenge2019", "Open Images Challenge 2019 object detection, 500 classes",
        ("challenge-2019-classes-description-500.csv",),
        ("challenge-2019-classes-description-500.csv",),
        ("challenge-2019-label500-hierarchy.json", "bbox_labels_500_hierarchy.json"),
        {s: _challenge_split(s) for s in ("train", "validation")}),
}


def find(root: pathlib.Path, candidates: Sequence[str]) -> pathlib.Path | None:
  """The first candidate present in root, or None."""
  for name in candidates:
    if (root / name).is_file():
      return root / name
  return None


def require(root: pathlib.Path, candidates: Sequence[str], what: str) -> pathlib.Path:
  """Like `find`, but a missing file is an error naming every name tried."""
  path = find(root, candidates)
  if path is None:
    raise FileNotFoundError(f"{what}: none of {', '.join(candidates)} found in {root}")
  return path


_IMAGE_DIRS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
_TAR = re.compile(r"^(?P<split>train|validation|test)(?:_(?P<part>[0-9a-f]{1,2}))?"
                  r"\.(?:tar|tar\.gz|tgz)$")


@dataclasses.dataclass(frozen=True)
class ImageSource:
  """Where a split's images are: a folder of `<ImageID>.jpg`, or tar files (sorted by name).

  `shared`: the folder holds the images of every split (the official downloader's flat folder).
  """

  folder: pathlib.Path | None = None
  tars: tuple[pathlib.Path, ...] = ()
  shared: bool = False

  def __bool__(self) -> bool:
    return self.folder is not None or bool(self.tars)


def image_source(root: pathlib.Path, split: str) -> ImageSource:
  """The split's images: a split folder, else tar files, else a flat folder of all splits' images.

  Split folders and tar files may sit in `root` or in `root/images`; the flat folder is `root/images`
  or `root`, whichever holds `<ImageID>.jpg` files (in that order). An empty ImageSource when none.
  """
  for base in (root, root / "images"):
    for name in _IMAGE_DIRS[split]:
      if (base / name).is_dir():
        return ImageSource(folder=base / name)
  tars = []
  for base in (root, root / "images"):
    if base.is_dir():
      tars += [p for p in base.iterdir() if p.is_file() and (m := _TAR.match(p.name))
               and m.group("split") == split]
  if tars:
    return ImageSource(tars=tuple(sorted(tars)))
  for folder in (root / "images", root):
    if folder.is_dir() and builder_images.has_images(folder):
      return ImageSource(folder=folder, shared=True)
  return ImageSource()


def manual_download_instructions() -> str:
  """The text TFDS shows when manual_dir is missing or incomplete."""
  return "\n".join([
      "Download the Open Images files of one release (https://storage.googleapis.com/openimages/web/"
      "download.html) into `manual_dir`, keeping the official file names:",
      "",
      *(release.instructions() for release in RELEASES.values()),
      "",
      "Images: folders `train/<ImageID>.jpg`, `validation/<ImageID>.jpg`, `test/<ImageID>.jpg` "
      "(in manual_dir or manual_dir/images), or the official tar files `train_0.tar` .. "
      "`train_f.tar`, `validation.tar`, `test.tar` (`.tar.gz` too), which are streamed, not "
      "unpacked, or the flat folder of the official downloader.py (`--download_folder` "
      "manual_dir/images, or manual_dir itself: `<ImageID>.jpg` of every split in one folder). "
      "A split whose box file is absent is not built; a split without an image-metadata file "
      "takes its image list from the image files (in a flat folder: those with a box or a "
      "human-verified label of the split) and Rotation 0.",
      "`oi-make-sample --out_dir DIR` writes a small synthetic download in the V6 layout.",
  ])
