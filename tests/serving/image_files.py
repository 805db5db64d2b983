"""Image files for the inference scripts' tests: real photos in the forms users have, and broken ones."""

import pathlib
import shutil

from PIL import Image

from tests.conftest import shared_path

GRAYSCALE = "000013ba71c12506"  # the grayscale photo of the shared train images
PHOTO = "0000313e5dccf13b"
BROKEN = {"truncated.jpg": "truncated_image", "notes.jpg": "corrupt_image", "empty.png": "corrupt_image"}


def write(folder: pathlib.Path) -> dict:
  """Writes good and bad images to `folder`; returns {"good": [ImageIDs], "bad": {file: reason}}."""
  folder.mkdir(parents=True, exist_ok=True)
  photos = shared_path("images", "train_2018_pyaf")
  for image_id in (GRAYSCALE, PHOTO):
    shutil.copy(photos / f"{image_id}.jpg", folder / f"{image_id}.jpg")
  photo = Image.open(photos / f"{PHOTO}.jpg").reduce(4)
  photo.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
  photo.save(folder / "png.png")
  # The same pixels twice, one file tagged EXIF orientation 6: the builder ignores the tag.
  photo.save(folder / "plain.jpg", quality=95)
  exif = Image.Exif()
  exif[274] = 6
  photo.save(folder / "exif_rotated.jpg", quality=95, exif=exif)
  data = (photos / f"{PHOTO}.jpg").read_bytes()
  (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
  (folder / "notes.jpg").write_text("not an image\n")
  (folder / "empty.png").write_bytes(b"")
  return {"good": [GRAYSCALE, PHOTO, "cmyk", "png", "plain", "exif_rotated"], "bad": dict(BROKEN)}


