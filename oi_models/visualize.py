"""Pictures of images with boxes: ground truth, input-pipeline output and detections.

One drawing routine for everything the package shows (the demo's input preview, the inference scripts'
pictures), so a box looks the same wherever it comes from (ground truth, the parser's output,
detections): one colour per class, the display name and the score on a filled tag above the box,
group-of boxes dashed, so the boxes Open Images marks as groups stand out from single objects.

Model Garden's `official/vision/utils/object_detection/visualization_utils.py` is not used: it has
no way to style group-of (`is_crowd`) boxes; it draws ground truth (no scores) in one fixed colour
and without class names, and detections only above `min_score_thresh` and up to
`max_boxes_to_draw`; it takes a `category_index` dict of dicts rather than a list of names. Drawing
with Pillow directly is a few lines.
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

_DASH = 6  # Pixels per dash on group-of boxes.


def class_colour(index: int) -> tuple[int, int, int]:
  """A bright colour per class index, far apart for neighbouring indices (golden-ratio hue steps)."""
  hue = (index * 0.618033988749895) % 1.0
  r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
  return int(r * 255), int(g * 255), int(b * 255)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box, colour, width: int) -> None:
  x0, y0, x1, y1 = box
  for a, b, fixed, horizontal in ((x0, x1, y0, True), (x0, x1, y1, True),
                                  (y0, y1, x0, False), (y0, y1, x1, False)):
    for start in np.arange(a, b, 2 * _DASH):
      end = min(start + _DASH, b)
      line = ((start, fixed), (end, fixed)) if horizontal else ((fixed, start), (fixed, end))
      draw.line(line, fill=colour, width=width)


def draw_boxes(image, boxes, classes: Sequence[int], names: Sequence[str] | None = None,
               scores: Sequence[float] | None = None, group_of: Sequence[bool] | None = None,
               normalized: bool = True, line_width: int = 2) -> Image.Image:
  """A copy of `image` with `boxes` drawn on it.

  Args:
    image: uint8 array [H, W, 3] or a PIL image.
    boxes: [N, 4] (ymin, xmin, ymax, xmax), the order of TFDS BBoxFeature and Model Garden.
    classes: N class indices; they pick the colour, and index `names` for the tag.
    names: display names by class index; without them the tag shows the index.
    scores: N scores shown after the name (detections); None for ground truth.
    group_of: N flags; group-of boxes are dashed.
    normalized: boxes are in [0, 1] (else pixels).
    line_width: box outline width in pixels.
  """
  picture = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8)))
  picture = picture.convert("RGB")
  draw = ImageDraw.Draw(picture)
  font = ImageFont.load_default()
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if normalized:
    boxes = boxes * [picture.height, picture.width, picture.height, picture.width]
  for i, (ymin, xmin, ymax, xmax) in enumerate(boxes):
    cls = int(classes[i])
    colour = class_colour(cls)
    rect = (float(xmin), float(ymin), float(xmax), float(ymax))
    if group_of is not None and group_of[i]:
      _dashed_rectangle(draw, rect, colour, line_width)
    else:
      draw.rectangle(rect, outline=colour, width=line_width)
    tag = names[cls] if names is not None else str(cls)
    if scores is not None:
      tag = f"{tag} {float(scores[i]):.2f}"
    left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
    tag_y = max(0.0, float(ymin) - (bottom - top) - 2)
    draw.rectangle((float(xmin), tag_y, float(xmin) + right - left + 2, tag_y + bottom - top + 2),
                   fill=colour)
    draw.text((float(xmin) + 1 - left, tag_y + 1 - top), tag, fill=(0, 0, 0), font=font)
  return picture


def contact_sheet(pictures: Sequence[Image.Image], columns: int = 4, gap: int = 4,
                  background=(255, 255, 255)) -> Image.Image:
  """The pictures in a grid, each cell as large as the largest picture, top-left aligned."""
  if not pictures:
    raise ValueError("contact_sheet needs at least one picture")
  columns = max(1, min(columns, len(pictures)))
  rows = -(-len(pictures) // columns)
  cell_w = max(p.width for p in pictures)
  cell_h = max(p.height for p in pictures)
  sheet = Image.new("RGB", (columns * cell_w + (columns + 1) * gap, rows * cell_h + (rows + 1) * gap),
                    background)
  for i, p in enumerate(pictures):
    row, col = divmod(i, columns)
    sheet.paste(p, (gap + col * (cell_w + gap), gap + row * (cell_h + gap)))
  return sheet
