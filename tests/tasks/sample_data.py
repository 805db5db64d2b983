"""The sample dataset (oi_models.datasets.make_sample) built as the TFDS `open_images` for task tests."""

import pathlib

CONFIG = "v6_original"


def build(root: pathlib.Path, num_images: int, seed: int = 0, image_size: int = 160) -> str:
  """Writes the sample under `root` and builds it (ArrayRecord); returns the TFDS data_dir."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from oi_models.datasets import builder  # pylint: disable=import-outside-toplevel
  from oi_models.datasets import make_sample  # pylint: disable=import-outside-toplevel
  make_sample.make_sample(root / "sample", num_images=num_images, seed=seed, image_size=image_size)
  data_dir = str(root / "tfds")
  ds_builder = builder.OpenImages(config=CONFIG, data_dir=data_dir, file_format="array_record")
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(root / "sample")))
  return data_dir


def data_override(data_dir: str) -> dict:
  """The params override pointing both splits of a classifier experiment at `data_dir`."""
  return {"task": {"train_data": {"tfds_data_dir": data_dir},
                   "validation_data": {"tfds_data_dir": data_dir}}}


def data_flag(data_dir: str) -> str:
  """The same as an --params_override flag value."""
  return (f"task.train_data.tfds_data_dir={data_dir},"
          f"task.validation_data.tfds_data_dir={data_dir}")


def experiment_params(experiment: str, data_dir: str, **override):
  """A registered experiment on one device, reading the sample at `data_dir`, with strict overrides."""
  from official.core import exp_factory  # pylint: disable=import-outside-toplevel
  params = exp_factory.get_exp_config(experiment)
  params.override(data_override(data_dir), is_strict=True)
  params.override({"runtime": {"distribution_strategy": "one_device"}}, is_strict=True)
  if override:
    params.override(override, is_strict=True)
  return params
