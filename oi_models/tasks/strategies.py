"""Distribution strategy and precision policy from an experiment's runtime config.

As Model Garden's own trainer (`official/vision/train.py`) does it: the strategy comes from
`distribute_utils.get_distribution_strategy` (`one_device`, `mirrored`, `multi_worker_mirrored` with
TF_CONFIG, `tpu` with `runtime.tpu`), and the Keras mixed-precision policy is set from
`runtime.mixed_precision_dtype` before the model is built (`train_lib.run_experiment` does not set
it). One addition: `runtime.num_cpu_devices` > 1 with `mirrored` splits the host CPU into that many
logical devices and mirrors over them, so data-parallel training is real without an accelerator.
"""

from __future__ import annotations

from absl import logging
import tensorflow as tf
from official.common import distribute_utils
from official.modeling import performance

STRATEGIES = ("off", "one_device", "mirrored", "multi_worker_mirrored", "tpu", "parameter_server")


def logical_cpus(count: int) -> list[str]:
  """Splits the first physical CPU into `count` logical devices (before TensorFlow initializes them)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if not current or len(current) != count:
    try:
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as e:
      raise RuntimeError(f"runtime.num_cpu_devices={count} must be set before TensorFlow creates its "
                         f"devices (start a new process): {e}") from None
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def build_strategy(runtime) -> tf.distribute.Strategy:
  """The strategy `runtime` (a Model Garden RuntimeConfig, or ours with num_cpu_devices) asks for."""
  name = (runtime.distribution_strategy or "off").lower()
  if name not in STRATEGIES:
    raise ValueError(f"runtime.distribution_strategy must be one of {STRATEGIES}; got {name!r}")
  cpu_devices = getattr(runtime, "num_cpu_devices", 0)
  if cpu_devices > 1:
    if name != "mirrored" or runtime.num_gpus:
      raise ValueError("runtime.num_cpu_devices > 1 needs distribution_strategy 'mirrored' and "
                       f"num_gpus 0; got {name!r} and {runtime.num_gpus}")
    devices = logical_cpus(cpu_devices)
    logging.info("MirroredStrategy over %d logical CPU devices", len(devices))
    return tf.distribute.MirroredStrategy(devices)
  return distribute_utils.get_distribution_strategy(
      distribution_strategy=name, num_gpus=runtime.num_gpus, all_reduce_alg=runtime.all_reduce_alg,
      num_packs=runtime.num_packs, tpu_address=runtime.tpu)


def set_precision(runtime) -> None:
  """Sets the Keras global policy from `runtime.mixed_precision_dtype` (float32 when unset)."""
  performance.set_mixed_precision_policy(runtime.mixed_precision_dtype or "float32")
