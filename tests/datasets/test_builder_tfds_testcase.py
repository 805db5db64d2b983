"""`open_images` under TFDS's own `DatasetBuilderTestCase`, on a freshly made sample.

TFDS's harness checks what a TFDS user relies on: registration, `download_and_prepare` through a
download manager whose manual_dir is the sample, every split's example count, serialization and
reading back with the declared features, and no example in two splits.
"""

import shutil
import tempfile

import tensorflow_datasets as tfds

from oi_models.datasets import builder
from oi_models.datasets import make_sample


class OpenImagesTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = builder.OpenImages
  BUILDER_CONFIG_NAMES_TO_TEST = ["v6_original", "v6_max1024", "v6_300k"]
  SPLITS = {"train": 6, "validation": 3, "test": 3}
  SKIP_CHECKSUMS = True  # Nothing is downloaded: the manual_dir is the whole input.
  MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False  # The readers stream local files with pyarrow.
  SKIP_TF1_GRAPH_MODE = True

  @classmethod
  def setUpClass(cls):
    cls._sample_dir = tempfile.mkdtemp(prefix="oi_sample_")
    make_sample.make_sample(cls._sample_dir, num_images=12, splits=(6, 3, 3), overwrite=True)
    cls.EXAMPLE_DIR = cls._sample_dir
    super().setUpClass()

  @classmethod
  def tearDownClass(cls):
    super().tearDownClass()
    shutil.rmtree(cls._sample_dir, ignore_errors=True)


if __name__ == "__main__":
  tfds.testing.test_main()
