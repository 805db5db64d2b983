"""Images for the `open_images` builder: reading them from folders or tar streams, and making them fit.

Open Images photos come as JPEGs of any size, a few of them stored sideways (the metadata's Rotation
column), a few CMYK, grayscale, or PNG files named `.jpg`, and a few broken. The dataset stores every
image as an upright RGB JPEG within the config's size policy, so readers need no special cases.

Rotation convention (Open Images, "Rotated images in Open Images", 2018-05-17): Rotation is 0, 90, 180
or 270, "the degrees (counterclockwise) that the image and boxes should be rotated" to be upright; NaN
means unknown (the photo had left Flickr) and is treated as 0. Boxes are normalized to the image as
stored, so they rotate with it (`rotate_boxes`). PIL's `Image.transpose(ROTATE_90)` is a 90-degree
counterclockwise turn. EXIF orientation is ignored: Rotation already accounts for it.

Decoding costs most of a build, so an image is only decoded fully when its pixels must change (rotation,
resize, colour mode, format). Otherwise its original bytes are kept, after a check decode at 1/8 scale
(libjpeg's DCT scaling reads the whole entropy-coded stream, so truncation is caught, at a fraction of a
full decode's cost). Resizing JPEGs also starts from a DCT-scaled draft no smaller than the target.

Pixel limit: Pillow refuses images over 2 x 89.5 megapixels as possible decompression bombs, but some
Flickr originals that Open Images links are larger (panoramas such as 20000 x 10000). Importing this
module raises Pillow's process-wide limit to `MAX_DECODE_PIXELS` (1 gigapixel, 3 GB as decoded RGB,
which a build worker can hold); an image over it is dropped as `too_many_pixels`, by that name.

16-bit images (PNG or TIFF grayscale, Pillow modes `I;16*` and `I`) are scaled to 8 bits
proportionally (0 -> 0, 65535 -> 255); Pillow's own conversion would clip every value above 255.

Image files: `<ImageID>.jpg` (as the official downloader, the mirrors and the tar files name them) or
another spelling (`.jpeg`, upper case). When one image has several files, the one used is the same in
folder and tar builds: the official spelling `<ImageID>.jpg` first, then the first other spelling (by
name in a folder, in archive order in a tar file); in tar files, an earlier file wins over later ones.
The others are counted as duplicates.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import pathlib
import re
import tarfile
from typing import Callable, Iterator

import numpy as np
from PIL import Image

POLICIES = ("original", "max1024", "300k")
MAX_LONG_SIDE = 1024
MAX_PIXELS = 300_000  # The official 300K thumbnails: at most about 300,000 pixels.
JPEG_QUALITY = 95  # Re-encoded images only; kept originals are untouched.
MAX_DECODE_PIXELS = 1_000_000_000  # Larger images are dropped as too_many_pixels (module docstring).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_DECODE_PIXELS:
  Image.MAX_IMAGE_PIXELS = MAX_DECODE_PIXELS  # Pillow warns above this and refuses above twice it.

_IMAGE_NAME = re.compile(r"^(?:.*/)?(?P<id>[0-9a-f]{16})\.jpe?g$", re.IGNORECASE)


class BadImageError(ValueError):
  """An image that cannot be used; `reason` is the report's counter name."""

  def __init__(self, reason: str, message: str):
    super().__init__(f"{reason}: {message}")
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class ProcessedImage:
  """The image as stored in the dataset, and what was done to it (report counter names)."""

  jpeg: bytes
  width: int
  height: int
  original_width: int  # Of the photo as given, upright (rotation applied), before resizing.
  original_height: int
  actions: tuple[str, ...]
  rotation: int = 0  # Degrees (0, 90, 180 or 270) the image was turned by (normalize_rotation).


def target_size(width: int, height: int, policy: str) -> tuple[int, int] | None:
  """(width, height) the policy asks for, or None when the image already fits.

  max1024: the long side becomes 1024, the other scales with it (rounded, at least 1).
  300k: both sides scale by sqrt(300000 / pixels), rounded down, so width * height <= 300,000.
  """
  if policy == "original":
    return None
  if policy == "max1024":
    long_side = max(width, height)
    if long_side <= MAX_LONG_SIDE:
      return None
    scale = MAX_LONG_SIDE / long_side
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # The long side must be exactly the limit, whatever rounding did to the other.
    return (MAX_LONG_SIDE, size[1]) if width >= height else (size[0], MAX_LONG_SIDE)
  if policy == "300k":
    if width * height <= MAX_PIXELS:
      return None
    scale = math.sqrt(MAX_PIXELS / (width * height))
    w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while w * h > MAX_PIXELS:  # Guards float error at the boundary.
      if w >= h:
        w -= 1
      else:
        h -= 1
    return w, h
  raise ValueError(f"unknown image policy {policy!r}; expected one of {POLICIES}")


def normalize_rotation(rotation: float) -> int:
  """0, 90, 180 or 270 from a metadata value; NaN (unknown) is 0; other angles are an error."""
  if rotation is None or not math.isfinite(rotation):
    return 0
  degrees = int(round(rotation)) % 360
  if degrees not in (0, 90, 180, 270) or abs(rotation - round(rotation)) > 1e-3:
    raise BadImageError("bad_rotation", f"Rotation {rotation} is not a multiple of 90")
  return degrees


def rotate_boxes(boxes: np.ndarray, rotation: int) -> np.ndarray:
  """Normalized (ymin, xmin, ymax, xmax) boxes of the stored image -> of the image turned CCW.

  A point (x, y) (y down) of the stored image is at (y, 1 - x) after 90 degrees counterclockwise,
  (1 - x, 1 - y) after 180, (1 - y, x) after 270.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  ymin, xmin, ymax, xmax = boxes.T
  if rotation == 0:
    return boxes.copy()
  if rotation == 90:
    out = (1 - xmax, ymin, 1 - xmin, ymax)
  elif rotation == 180:
    out = (1 - ymax, 1 - xmax, 1 - ymin, 1 - xmin)
  elif rotation == 270:
    out = (xmin, 1 - ymax, xmax, 1 - ymin)
  else:
    raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
  return np.stack(out, axis=1).astype(np.float32)


_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
              270: Image.Transpose.ROTATE_270}


def _bad(error: Exception, name: str) -> BadImageError:
  # PIL names the stream it was given (`<_io.BytesIO object at 0x...>`): the file is named instead.
  text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error))
  if isinstance(error, Image.DecompressionBombError):
    reason = "too_many_pixels"
  else:
    reason = "truncated_image" if "truncat" in text.lower() else "corrupt_image"
  return BadImageError(reason, f"{name}: {type(error).__name__}: {text}")


def _to_rgb(image: Image.Image) -> Image.Image:
  """RGB of any mode; 16-bit values are scaled to 8 bits, not clipped (see the module docstring)."""
  if image.mode in _SIXTEEN_BIT_MODES:
    values = np.clip(np.asarray(image, dtype=np.float32), 0, 65535)
    image = Image.fromarray(np.rint(values * (255 / 65535)).astype(np.uint8), "L")
  return image.convert("RGB")


def process_image(data: bytes, rotation: float = 0.0, policy: str = "original",
                  quality: int = JPEG_QUALITY, name: str = "image") -> ProcessedImage:
  """Checks an image file's bytes and makes it an upright RGB JPEG within `policy`.

  Args:
    name: where the bytes come from (a path, a tar member), for messages.

  Raises:
    BadImageError: reason "corrupt_image" (unreadable), "truncated_image", "too_many_pixels" (over
      MAX_DECODE_PIXELS) or "bad_rotation".
  """
  degrees = normalize_rotation(rotation)
  try:
    image = Image.open(io.BytesIO(data))
    fmt, mode, (width, height) = image.format, image.mode, image.size
  except Exception as e:  # PIL raises many types for bad headers. pylint: disable=broad-except
    raise _bad(e, name) from None
  if width * height > MAX_DECODE_PIXELS:
    raise BadImageError("too_many_pixels", f"{name}: {width} x {height} pixels, more than the "
                        f"{MAX_DECODE_PIXELS:,} this builder decodes (MAX_DECODE_PIXELS)")
  upright = (height, width) if degrees in (90, 270) else (width, height)
  target = target_size(*upright, policy)
  actions = []
  if degrees:
    actions.append(f"rotated_{degrees}")
  if target:
    actions.append("resized")
  if fmt != "JPEG":
    actions.append(f"converted_{(fmt or 'unknown').lower()}")
  if mode != "RGB":
    actions.append(f"converted_{mode.lower().replace(';', '_')}")
  try:
    if fmt == "JPEG" and (target or not actions):
      # DCT scaling: the smallest draft not smaller than what is needed (1/8 for a mere check).
      stored = (target[::-1] if degrees in (90, 270) else target) if target else None
      image.draft(None, stored or (max(1, width // 8), max(1, height // 8)))
    image.load()
    if not actions:
      return ProcessedImage(data, width, height, width, height, ())
    if image.mode != "RGB":
      image = _to_rgb(image)
    if degrees:
      image = image.transpose(_TRANSPOSE[degrees])
    if target and image.size != target:
      image = image.resize(target, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
  except BadImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise _bad(e, name) from None
  return ProcessedImage(buffer.getvalue(), image.size[0], image.size[1], upright[0], upright[1],
                        tuple(actions), degrees)


def image_id_of(name: str) -> str | None:
  """ImageID of a file or tar entry name like `train_0/<id>.jpg`, or None if it is not one."""
  match = _IMAGE_NAME.match(name)
  return match.group("id").lower() if match else None


def name_rank(image_id: str, name: str) -> int:
  """0 for the official spelling `<ImageID>.jpg` of an entry's base name, 1 for any other."""
  return 0 if name.rsplit("/", 1)[-1] == f"{image_id}.jpg" else 1


def folder_entries(folder: pathlib.Path) -> Iterator[tuple[str, tuple[tuple, str]]]:
  """(ImageID, (preference key, file name)) of every entry named like an image, in listing order.

  The smallest key of an ImageID is the file to use (module docstring); entries that are not files
  (a folder named `<ImageID>.jpg`, a broken link) come after every file. One directory listing: a
  stat only for symbolic links.
  """
  with os.scandir(folder) as entries:
    for entry in entries:
      image_id = image_id_of(entry.name)
      if image_id is not None:
        yield image_id, ((not entry.is_file(), name_rank(image_id, entry.name), entry.name),
                         entry.name)


@dataclasses.dataclass(frozen=True)
class FolderListing:
  """The images of a folder: the file to use per ImageID, and how many entries each ImageID has."""

  files: dict[str, str]
  entries: dict[str, int]

  def duplicates(self, image_ids=None) -> int:
    """Entries beyond the first, of `image_ids` (default every ImageID)."""
    ids = self.entries if image_ids is None else image_ids
    return sum(self.entries.get(i, 0) - 1 for i in ids if i in self.entries)


def list_folder(folder: pathlib.Path) -> FolderListing:
  """The preferred file of every ImageID in a folder (see `folder_entries`)."""
  best, entries = {}, {}
  for image_id, (key, name) in folder_entries(folder):
    entries[image_id] = entries.get(image_id, 0) + 1
    if image_id not in best or key < best[image_id][0]:
      best[image_id] = (key, name)
  return FolderListing({i: name for i, (_, name) in best.items()}, entries)


def has_images(folder: pathlib.Path) -> bool:
  """Whether a folder holds at least one entry named `<ImageID>.jpg` (stops at the first)."""
  with os.scandir(folder) as entries:
    return any(image_id_of(entry.name) is not None for entry in entries)


def read_folder_image(folder: pathlib.Path, name: str) -> bytes:
  """The bytes of an image file; a folder, broken link or unreadable file is a BadImageError."""
  path = folder / name
  try:
    return path.read_bytes()
  except OSError as e:
    raise BadImageError("unreadable_file", f"{path}: {type(e).__name__}: {e.strerror or e}") from None


def iter_tar(path: pathlib.Path, wanted: Callable[[str], bool] = lambda _: True,
             on_error: Callable[[str, str], None] | None = None,
             with_names: bool = False) -> Iterator[tuple]:
  """(ImageID, bytes) of the images in a tar file, streamed in file order (gzip detected).

  Entries that are not `<ImageID>.jpg` are passed over; `wanted(image_id)` False skips reading an
  entry's data. With `with_names`, (ImageID, bytes, member name). A damaged archive ends the stream:
  `on_error(reason, message)` is told ("corrupt_tar"), the images read so far stand. (Python's
  tarfile takes an archive cut inside a member header for its end, silently; the builder still counts
  the images it lacks as missing.)
  """
  try:
    with tarfile.open(path, mode="r|*") as archive:
      for member in archive:
        if not member.isfile():
          continue
        image_id = image_id_of(member.name)
        if image_id is None or not wanted(image_id):
          continue
        handle = archive.extractfile(member)
        if handle is not None:
          data = handle.read()
          yield (image_id, data, member.name) if with_names else (image_id, data)
  except (tarfile.TarError, EOFError, OSError, ValueError) as e:
    if on_error is None:
      raise
    on_error("corrupt_tar", f"{path}: {type(e).__name__}: {e}")
