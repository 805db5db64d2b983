"""Checks the drawn pixels: box outlines where the boxes are, dashes for group-of, tags inside the image."""

import numpy as np
import pytest

from oi_models import visualize


def _blank(h=100, w=200):
  return np.full((h, w, 3), 255, np.uint8)


def test_outline_is_drawn_at_the_box_edges_in_the_class_colour():
  picture = np.asarray(visualize.draw_boxes(_blank(), [[0.5, 0.25, 0.9, 0.75]], [3]))
  colour = visualize.class_colour(3)
  # Box in pixels: y 50..90, x 50..150. Left and right edges at x=50 and x=150, rows below the tag.
  for x in (50, 150):
    assert tuple(picture[70, x]) == colour
  assert tuple(picture[90, 100]) == colour  # bottom edge
  assert tuple(picture[70, 100]) == (255, 255, 255)  # inside stays untouched
  assert tuple(picture[95, 10]) == (255, 255, 255)  # outside too


def test_pixel_boxes_equal_normalized_boxes():
  normalized = visualize.draw_boxes(_blank(), [[0.5, 0.25, 0.9, 0.75]], [1], names=["a", "b"])
  pixels = visualize.draw_boxes(_blank(), [[50, 50, 90, 150]], [1], names=["a", "b"], normalized=False)
  np.testing.assert_array_equal(np.asarray(normalized), np.asarray(pixels))


def test_group_of_boxes_are_dashed():
  solid = np.asarray(visualize.draw_boxes(_blank(), [[0.5, 0.05, 0.95, 0.95]], [0]))
  dashed = np.asarray(visualize.draw_boxes(_blank(), [[0.5, 0.05, 0.95, 0.95]], [0], group_of=[True]))
  colour = np.array(visualize.class_colour(0))
  bottom_solid = (solid[95] == colour).all(axis=-1)[10:190]
  bottom_dashed = (dashed[95] == colour).all(axis=-1)[10:190]
  assert bottom_solid.all()
  assert 0.3 < bottom_dashed.mean() < 0.8


def test_distinct_colours_for_neighbouring_classes():
  colours = {visualize.class_colour(i) for i in range(50)}
  assert len(colours) == 50


def test_contact_sheet_places_every_picture():
  pictures = [visualize.draw_boxes(_blank(20 + i, 30), [], []) for i in range(5)]
  sheet = visualize.contact_sheet(pictures, columns=2, gap=4)
  assert sheet.size == (2 * 30 + 3 * 4, 3 * 24 + 4 * 4)
  with pytest.raises(ValueError):
    visualize.contact_sheet([])
