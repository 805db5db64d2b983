"""The annotation readers' public names in one place (`from oi_models.io import readers`).

Each job lives in a module of its own: `csv_engine` (segments, quote guard, checks, line numbers),
`boxes`, `image_labels`, `image_metadata` (one per file kind), `grouping` (rows by image),
`image_ids` (ImageID keys), `report` (what a read kept and skipped), `errors`. Bad input never
disappears silently: a bad row raises `AnnotationError` naming file, physical line and field in
strict mode, or is skipped and counted in a `ReadReport` (the default).
"""

from oi_models.io.boxes import BoxTable
from oi_models.io.boxes import CLICK_COLUMNS
from oi_models.io.boxes import COORD_TOLERANCE
from oi_models.io.boxes import FLAG_COLUMNS
from oi_models.io.boxes import is_group_of
from oi_models.io.boxes import iter_boxes
from oi_models.io.boxes import read_boxes
from oi_models.io.csv_engine import DEFAULT_CHUNK_BYTES
from oi_models.io.errors import AnnotationError
from oi_models.io.grouping import group_by_image
from oi_models.io.grouping import ImageGroups
from oi_models.io.grouping import iter_image_groups
from oi_models.io.image_ids import image_id_to_key
from oi_models.io.image_ids import key_to_image_id
from oi_models.io.image_labels import iter_image_labels
from oi_models.io.image_labels import LabelTable
from oi_models.io.image_labels import read_image_labels
from oi_models.io.image_metadata import iter_image_metadata
from oi_models.io.image_metadata import METADATA_COLUMNS
from oi_models.io.image_metadata import MetadataTable
from oi_models.io.image_metadata import read_image_metadata
from oi_models.io.report import MAX_EXAMPLES
from oi_models.io.report import ReadReport

__all__ = [
    "AnnotationError",
    "BoxTable",
    "CLICK_COLUMNS",
    "COORD_TOLERANCE",
    "DEFAULT_CHUNK_BYTES",
    "FLAG_COLUMNS",
    "group_by_image",
    "image_id_to_key",
    "ImageGroups",
    "is_group_of",
    "iter_boxes",
    "iter_image_groups",
    "iter_image_labels",
    "iter_image_metadata",
    "key_to_image_id",
    "LabelTable",
    "MAX_EXAMPLES",
    "METADATA_COLUMNS",
    "MetadataTable",
    "read_boxes",
    "read_image_labels",
    "read_image_metadata",
    "ReadReport",
]
