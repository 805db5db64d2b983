"""The TFDS builder `open_images` over a manual download, its CLI, and the sample dataset maker.

Importing this package registers the TFDS builder `open_images` (`oi_models.datasets.builder`), so
`tfds.load("open_images/<config>")` and `tfds build --imports oi_models.datasets` find it.
"""

from oi_models.datasets import builder as _builder  # pylint: disable=unused-import  # Registers open_images.
