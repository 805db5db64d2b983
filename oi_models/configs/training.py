"""Experiment-level configs shared by every model of the package: runtime and experiment.

Model Garden's `RuntimeConfig` picks the strategy (`one_device`, `mirrored`, `multi_worker_mirrored`,
`tpu`) and the mixed-precision policy. One field is added: `num_cpu_devices` splits the host CPU into
that many logical devices, so `mirrored` really runs several replicas on a machine without
accelerators (to test distribution, or to check a config before renting GPUs). Zero keeps TensorFlow's
single CPU device.
"""

import dataclasses

from official.core import config_definitions as cfg


@dataclasses.dataclass
class RuntimeConfig(cfg.RuntimeConfig):
  """Model Garden's runtime config, plus logical CPU devices for `mirrored` without accelerators."""
  num_cpu_devices: int = 0


@dataclasses.dataclass
class ExperimentConfig(cfg.ExperimentConfig):
  """Model Garden's experiment config with this package's runtime config."""
  runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
