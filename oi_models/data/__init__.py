"""Open Images data: annotation readers, the sample dataset maker, the TFDS builder, input pipelines.

Importing this package registers the TFDS builder `open_images` (`oi_models.data.builder`), so
`tfds.load("open_images/<config>")` and `tfds build --imports oi_models.data` find it.
"""

from oi_models.data import builder as _builder  # pylint: disable=unused-import  # Registers open_images.
