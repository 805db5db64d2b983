"""The sample dataset's world: its classes, their shapes and colours, and how a scene is drawn.

The sample (see `make_sample`) must be learnable by a small detector and classifier, so each boxable
leaf class is one filled shape in one colour that no other class uses, and the two image-level-only
classes are background colours. Parent classes ("Round shape", "Polygon", "Sign") own no pixels: they
get boxes and positives only through hierarchy expansion. "Triangle" sits under two parents and "Dot"
is a `Part` of "Square" (and drawn on some squares), as the real hierarchy has both.

Boxes are read back from what was drawn, not from what was intended: every object owns the pixels it
painted last (an owner map), its box is the tight box of its visible pixels, its extreme points are
visible pixels on the box edges, and IsOccluded / IsTruncated come from pixels covered by later objects
or falling outside the canvas. A placement is kept only if every object stays recognisable (most of it
visible, its colour the largest in its box), so box contents always match their class. This module
knows nothing about CSV files or ImageIDs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from oi_models import labels

# Sample MIDs use the `/m/0smp` prefix, which no real Open Images class has.
ROOT_MID = labels.ROOT_MID  # "Entity", the real root, as in the official hierarchy.


@dataclasses.dataclass(frozen=True)
class ShapeClass:
  """A boxable class that is drawn: `shape` is a key of `_SHAPES`, `colour` its fill (RGB)."""

  mid: str
  name: str
  shape: str
  colour: tuple[int, int, int]
  size_range: tuple[float, float] = (0.14, 0.4)  # Side, as a fraction of the image's short side.


# Leaf classes, colours at least ~95 apart in RGB from each other and from every background.
LEAF_CLASSES = (
    ShapeClass("/m/0smp01", "Circle", "circle", (220, 30, 30)),
    ShapeClass("/m/0smp02", "Square", "square", (30, 60, 220)),
    ShapeClass("/m/0smp03", "Triangle", "triangle", (30, 170, 50)),
    ShapeClass("/m/0smp04", "Ring", "ring", (255, 140, 0)),
    ShapeClass("/m/0smp05", "Cross", "cross", (240, 230, 30)),
    ShapeClass("/m/0smp06", "Diamond", "diamond", (140, 40, 180)),
    ShapeClass("/m/0smp07", "Dot", "circle", (0, 200, 220), size_range=(0.07, 0.13)),
)
CIRCLE, SQUARE, TRIANGLE, RING, CROSS, DIAMOND, DOT = range(len(LEAF_CLASSES))
# Shapes whose touching copies stay countable (touching squares would merge into one rectangle).
GROUP_LEAVES = (CIRCLE, TRIANGLE, RING, DIAMOND, DOT)

# Boxable parents (no pixels of their own) and their leaf children.
PARENT_CLASSES = {
    ("/m/0smp11", "Round shape"): (CIRCLE, RING),
    ("/m/0smp12", "Polygon"): (SQUARE, TRIANGLE, DIAMOND),
    ("/m/0smp13", "Sign"): (TRIANGLE, CROSS),
}

# Image-level-only classes (not boxable): the scene's background. The comma exercises CSV quoting.
BACKGROUNDS = {  # name -> (MID or None, colour)
    "plain": (None, (128, 128, 128)),
    "night": ("/m/0smp21", (18, 20, 48)),
    "snow": ("/m/0smp22", (236, 236, 240)),
}
SCENE_CLASSES = (("/m/0smp21", "Night"), ("/m/0smp22", "Snow, ice and frost"))

OUTLINE_COLOUR = (0, 0, 0)  # Depictions are drawn cartoon-style, with a black outline.
_MIN_VISIBLE = 0.55  # Fraction of an object's in-canvas pixels that must stay visible.
_MIN_FILL = 0.3  # Fraction of an object's box that its own pixels must fill.
_LEAD = 1.25  # How much more of its box an object's colour must fill than any other colour.
_OCCLUDED = 0.02  # Fraction of an object covered by others from which it counts as occluded.


def hierarchy_tree() -> dict:
  """The hierarchy in the official JSON shape (keys LabelName, Part, Subcategory, in that order)."""
  leaf = lambda i: {"LabelName": LEAF_CLASSES[i].mid}
  parents = []
  for (mid, _), children in PARENT_CLASSES.items():
    nodes = [leaf(i) for i in children]
    for node in nodes:
      if node["LabelName"] == LEAF_CLASSES[SQUARE].mid:
        node["Part"] = [leaf(DOT)]
    parents.append({"LabelName": mid, "Subcategory": nodes})
  # As in the real file, a part class is also listed as a class of its own under the root.
  return {"LabelName": ROOT_MID, "Subcategory": parents + [leaf(DOT)]}


def boxable_classes() -> list[tuple[str, str]]:
  """(MID, name) of every boxable class, leaves and parents, sorted by MID as the official list is."""
  pairs = [(c.mid, c.name) for c in LEAF_CLASSES] + list(PARENT_CLASSES)
  return sorted(pairs)


def leaf_ancestors(leaf: int) -> list[str]:
  """MIDs of the parents of a leaf class (the sample's hierarchy is two levels deep)."""
  return [mid for (mid, _), kids in PARENT_CLASSES.items() if leaf in kids]


# --- Drawing ------------------------------------------------------------------------------------


def _circle(draw, s):
  draw.ellipse((0, 0, s - 1, s - 1), fill=1)


def _square(draw, s):
  draw.rectangle((0, 0, s - 1, s - 1), fill=1)


def _triangle(draw, s):
  draw.polygon(((s - 1) / 2, 0, 0, s - 1, s - 1, s - 1), fill=1)


def _ring(draw, s):
  draw.ellipse((0, 0, s - 1, s - 1), fill=1)
  inner = round(s * 0.27)
  draw.ellipse((inner, inner, s - 1 - inner, s - 1 - inner), fill=0)


def _cross(draw, s):
  a, b = round(s / 3), s - 1 - round(s / 3)
  draw.rectangle((a, 0, b, s - 1), fill=1)
  draw.rectangle((0, a, s - 1, b), fill=1)


def _diamond(draw, s):
  m = (s - 1) / 2
  draw.polygon((m, 0, s - 1, m, m, s - 1, 0, m), fill=1)


_SHAPES = {"circle": _circle, "square": _square, "triangle": _triangle, "ring": _ring,
           "cross": _cross, "diamond": _diamond}


def shape_mask(shape: str, size: int) -> np.ndarray:
  """A `size` x `size` boolean mask of one shape."""
  image = Image.new("L", (size, size), 0)
  _SHAPES[shape](ImageDraw.Draw(image), size)
  return np.asarray(image, dtype=bool)


def _dilate(mask: np.ndarray) -> np.ndarray:
  """`mask` grown by one pixel in the four directions, same shape."""
  grown = mask.copy()
  grown[1:] |= mask[:-1]
  grown[:-1] |= mask[1:]
  grown[:, 1:] |= mask[:, :-1]
  grown[:, :-1] |= mask[:, 1:]
  return grown


def _outline(mask: np.ndarray) -> np.ndarray:
  """Pixels of `mask` with a 4-neighbour outside it (a one-pixel contour)."""
  padded = np.pad(mask, 1)
  interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
  return mask & ~interior


@dataclasses.dataclass
class SceneBox:
  """One annotated object (or group) of a scene, in pixels; x1, y1 exclusive.

  `clicks` are four extreme points (x, y) on the box edges (top, left, bottom, right, then shuffled
  into a random clicking order), in pixel units: a point on the left edge has x == x0.
  """

  leaf: int
  x0: int
  y0: int
  x1: int
  y1: int
  is_occluded: int
  is_truncated: int
  is_group_of: int
  is_depiction: int
  is_inside: int
  clicks: tuple[tuple[float, float], ...]


@dataclasses.dataclass
class Scene:
  """A drawn image and its annotations."""

  pixels: np.ndarray  # uint8 [height, width, 3]
  background: str  # key of BACKGROUNDS
  boxes: list[SceneBox]
  drawn_leaves: frozenset[int]  # every leaf class with pixels in the image (boxed or not)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What one scene should show; `compose` tries to honour each wish and may give up on one."""

  num_objects: int = 3
  background: str = "plain"
  group_of: bool = False
  occlusion: bool = False
  truncation: bool = False
  depiction: bool = False
  inside: bool = False


@dataclasses.dataclass
class _Object:
  leaf: int
  area: int  # in-canvas pixels when drawn
  truncated: bool
  group_of: bool = False
  depiction: bool = False
  inside: bool = False
  covered: int = 0  # pixels covered later by objects that are not its parts


class _Canvas:
  """Owner map (which object each pixel shows) and ink map (which colour), with trial placements."""

  def __init__(self, height: int, width: int):
    self.height, self.width = height, width
    self.owner = np.full((height, width), -1, np.int16)
    self.ink = np.full((height, width), -1, np.int16)  # -1 background, else leaf, or len(LEAF)
    self.objects: list[_Object] = []

  def place(self, leaf: int, stamps, group_of=False, depiction=False, inside=False,
            part_of: Optional[int] = None, occludes: Optional[int] = None) -> Optional[int]:
    """Draws one object (several stamps for a group) if every object stays recognisable.

    `stamps` are (mask, top, left) in canvas pixels, possibly reaching outside the canvas. `part_of`:
    the object this one is a part of (covering it is no occlusion); `occludes`: an object this one
    must cover enough to occlude it. Returns the new object's index, or None (canvas unchanged) when
    the placement would hide an object or miss `occludes`.
    """
    k = len(self.objects)
    owner, ink = self.owner.copy(), self.ink.copy()
    covered = np.zeros(k + 1, np.int64)
    truncated = False
    for mask, top, left in stamps:
      window, local = self._clip(mask, top, left)
      if not local.any():
        return None
      truncated |= bool(local.sum() < mask.sum())
      near, grown = self._clip(_dilate(np.pad(mask, 1)), top - 1, left - 1)
      if (self.ink[near][grown] == leaf).any():
        return None  # Touching an earlier object of the same colour would merge the two.
      under = owner[window][local]
      covered += np.bincount(under[under >= 0], minlength=k + 1)
      owner[window][local] = k
      ink[window][local] = leaf
      if depiction:
        ink[window][self._clip(_outline(mask), top, left)[1]] = len(LEAF_CLASSES)
    obj = _Object(leaf, area=int((owner == k).sum()), truncated=truncated, group_of=group_of,
                  depiction=depiction, inside=inside)
    if obj.area == 0:
      return None
    if occludes is not None and covered[occludes] <= _OCCLUDED * self.objects[occludes].area:
      return None
    if not all(_recognisable(owner, ink, j, o) for j, o in enumerate(self.objects + [obj])):
      return None
    for j, o in enumerate(self.objects):
      if j != part_of:
        o.covered += int(covered[j])
    self.owner, self.ink = owner, ink
    self.objects.append(obj)
    return k

  def _clip(self, mask: np.ndarray, top: int, left: int):
    """(canvas window, the part of `mask` inside it) for `mask` placed at (top, left)."""
    h, w = mask.shape
    y0, x0 = min(max(top, 0), self.height), min(max(left, 0), self.width)
    y1, x1 = max(min(top + h, self.height), y0), max(min(left + w, self.width), x0)
    return (slice(y0, y1), slice(x0, x1)), mask[y0 - top:y1 - top, x0 - left:x1 - left]

  def bounds(self, k: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of object k's visible pixels, ends exclusive."""
    ys, xs = np.nonzero(self.owner == k)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

  def box(self, k: int, rng: np.random.Generator) -> SceneBox:
    obj = self.objects[k]
    ys, xs = np.nonzero(self.owner == k)
    x0, y0, x1, y1 = self.bounds(k)
    # The middle visible pixel of the top row, left column, bottom row and right column (np.nonzero
    # lists pixels in row-major order, so each selection is sorted). Pixel centres are at +0.5.
    mid = lambda v: float(v[len(v) // 2]) + 0.5
    clicks = [(mid(xs[ys == y0]), float(y0)), (float(x0), mid(ys[xs == x0])),
              (mid(xs[ys == y1 - 1]), float(y1)), (float(x1), mid(ys[xs == x1 - 1]))]
    order = rng.permutation(4)
    return SceneBox(obj.leaf, x0, y0, x1, y1,
                    is_occluded=int(obj.covered > _OCCLUDED * obj.area),
                    is_truncated=int(obj.truncated), is_group_of=int(obj.group_of),
                    is_depiction=int(obj.depiction), is_inside=int(obj.inside),
                    clicks=tuple(clicks[i] for i in order))


def _recognisable(owner: np.ndarray, ink: np.ndarray, k: int, obj: _Object) -> bool:
  """Object k keeps most of its pixels, and its colour fills its box well ahead of any other ink."""
  ys, xs = np.nonzero(owner == k)
  if ys.size < _MIN_VISIBLE * obj.area or ys.size == 0:
    return False
  box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
  box_ink = ink[box]
  if min(box_ink.shape) < 4:
    return False
  own = int(((owner[box] == k) & (box_ink == obj.leaf)).sum())
  others = np.bincount(box_ink[(box_ink >= 0) & (box_ink != obj.leaf)], minlength=1).max()
  return own >= _MIN_FILL * box_ink.size and own >= _LEAD * others


def compose(rng: np.random.Generator, width: int, height: int, recipe: Recipe,
            tries: int = 25) -> Scene:
  """Draws a scene following `recipe` and returns its pixels and the boxes of what it shows."""
  canvas = _Canvas(height, width)
  short = min(width, height)
  boxed: list[int] = []

  def attempt(make_stamps, leaf, **kwargs) -> Optional[int]:
    for _ in range(tries):
      k = canvas.place(leaf, make_stamps(), **kwargs)
      if k is not None:
        boxed.append(k)
        return k
    return None

  def single(leaf, size, cx, cy):
    mask = shape_mask(LEAF_CLASSES[leaf].shape, size)
    return [(mask, int(round(cy - size / 2)), int(round(cx - size / 2)))]

  def inside_canvas(size):
    return rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)

  def across_edge(size):
    """A centre from a sixth of the size outside to a third inside one image edge."""
    side = rng.integers(4)
    along = rng.uniform(0, width if side < 2 else height)
    depth = rng.uniform(-size / 6, size / 3)
    if side == 0:
      return along, depth
    if side == 1:
      return along, height - depth
    return (depth, along) if side == 2 else (width - depth, along)

  if recipe.inside:  # A view from inside a big square: drawn first, others on top.
    size = int(rng.uniform(0.9, 1.15) * max(width, height))
    attempt(lambda: single(SQUARE, size, width / 2 + rng.uniform(-0.1, 0.1) * width,
                           height / 2 + rng.uniform(-0.1, 0.1) * height), SQUARE, inside=True)

  if recipe.group_of:  # 5+ touching instances of one class, boxed once as a group.
    leaf = int(rng.choice(GROUP_LEAVES))
    size = max(9, int(rng.uniform(0.08, 0.12) * short))
    rows, cols = int(rng.integers(2, 4)), int(rng.integers(3, 5))
    step = size - 1  # Neighbours share a pixel column or row: they touch.
    mask = shape_mask(LEAF_CLASSES[leaf].shape, size)

    def cluster():
      left = int(rng.uniform(0, width - cols * step - 1))
      top = int(rng.uniform(0, height - rows * step - 1))
      return [(mask, top + r * step, left + c * step) for r in range(rows) for c in range(cols)]

    attempt(cluster, leaf, group_of=True)

  for n in range(recipe.num_objects):
    forced_depiction = recipe.depiction and n == 0
    leaf = int(rng.integers(DOT if forced_depiction else len(LEAF_CLASSES)))
    low, high = LEAF_CLASSES[leaf].size_range
    size = max(8, int(rng.uniform(low, high) * short))
    depiction = forced_depiction or (size >= 24 and rng.random() < 0.04)
    size = max(size, 24) if depiction else size
    edge = (recipe.truncation and n == 0) or rng.random() < 0.12
    target = None
    if recipe.occlusion and n == recipe.num_objects - 1 and boxed:
      target = boxed[int(rng.integers(len(boxed)))]
      x0, y0, x1, y1 = canvas.bounds(target)
      # Centre near one corner of the target, pulled inwards, so it covers part of it.
      where = lambda: (rng.choice([x0, x1]) + rng.uniform(-0.35, 0.35) * size,
                       rng.choice([y0, y1]) + rng.uniform(-0.35, 0.35) * size)
    else:
      where = lambda: across_edge(size) if edge else inside_canvas(size)
    k = attempt(lambda: single(leaf, size, *where()), leaf, depiction=depiction, occludes=target)
    if k is not None and leaf == SQUARE and size >= 28 and rng.random() < 0.5:
      # A dot on the square, as a part: annotated on its own, not an occlusion of the square.
      x0, y0, x1, y1 = canvas.bounds(k)
      dot = max(8, size // 4)
      attempt(lambda: single(DOT, dot, (x0 + x1) / 2 + rng.uniform(-0.2, 0.2) * size,
                             (y0 + y1) / 2 + rng.uniform(-0.2, 0.2) * size), DOT, part_of=k)

  colours = np.array([c.colour for c in LEAF_CLASSES] + [OUTLINE_COLOUR]
                     + [BACKGROUNDS[recipe.background][1]], np.int16)
  pixels = colours[canvas.ink]  # ink -1 picks the last row: the background.
  pixels += rng.integers(-5, 6, size=pixels.shape, dtype=np.int16)  # A little sensor noise.
  return Scene(pixels=np.clip(pixels, 0, 255).astype(np.uint8), background=recipe.background,
               boxes=[canvas.box(k, rng) for k in boxed],
               drawn_leaves=frozenset(o.leaf for o in canvas.objects))
