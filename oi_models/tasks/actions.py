"""Orbit actions every training run of the package gets: a non-finite loss stop, progress, reports.

Orbit calls train actions after each loop of `steps_per_loop` steps, before it considers saving a
checkpoint, and eval actions after each evaluation. So `StopOnNonFiniteLoss`, raising on a NaN or
infinite loop loss, stops the run before the bad weights are saved: the latest checkpoint is the last
good one, and a restart resumes from it.
"""

from __future__ import annotations

import datetime
import math
import time
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

LOSS_KEY = "training_loss"


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite."""


def _value(x) -> float:
  return float(np.asarray(x.numpy() if hasattr(x, "numpy") else x))


class StopOnNonFiniteLoss:
  """Raises `NonFiniteLossError` when a loop's mean training loss is NaN or infinite."""

  def __init__(self, global_step: tf.Variable, model_dir: str):
    self._global_step = global_step
    self._model_dir = model_dir

  def __call__(self, output) -> None:
    if LOSS_KEY not in output:
      return
    loss = _value(output[LOSS_KEY])
    if math.isfinite(loss):
      return
    step = int(self._global_step.numpy())
    latest = tf.train.latest_checkpoint(self._model_dir)
    raise NonFiniteLossError(
        f"training loss is {loss} in the loop ending at step {step}; stopped without saving. "
        f"The latest checkpoint is still the last good one: {latest or 'none yet'}. Lower the "
        "learning rate, check the input, or set trainer.recovery_max_trials to retry from it.")


class Progress:
  """Logs step, loss, learning rate, rates and the time left after every training loop."""

  def __init__(self, global_step: tf.Variable, total_steps: int, global_batch_size: int,
               clock: Callable[[], float] = time.perf_counter):
    self._global_step = global_step
    self._total = total_steps
    self._batch = global_batch_size
    self._clock = clock
    self._last = None  # (time, step) after the previous loop.
    self._first = None  # (time, step) after the first loop: later rates exclude tracing.

  def __call__(self, output) -> Optional[str]:
    now, step = self._clock(), int(self._global_step.numpy())
    if self._last is None:
      self._first = self._last = (now, step)
      line = f"step {step}/{self._total}"
    else:
      loop_rate = (step - self._last[1]) / max(now - self._last[0], 1e-9)
      mean_rate = (step - self._first[1]) / max(now - self._first[0], 1e-9)
      eta = datetime.timedelta(seconds=round((self._total - step) / max(mean_rate, 1e-9)))
      line = (f"step {step}/{self._total} ({100 * step / max(self._total, 1):.0f}%) | "
              f"{loop_rate:.2f} steps/s, {loop_rate * self._batch:.1f} images/s | ETA {eta}")
      self._last = (now, step)
    if LOSS_KEY in output:
      line += f" | loss {_value(output[LOSS_KEY]):.4f}"
    if "learning_rate" in output:
      line += f" | lr {_value(output['learning_rate']):.3g}"
    logging.info("train | %s", line)
    return line


class WriteEvaluation:
  """After each evaluation, has the task write its report (metrics.json, per-class table) to a dir.

  The task's `write_evaluation(output_dir, step)` knows its metric's files (a task without it
  writes nothing). Only the chief writes (the other workers of a multi-worker job hold the same
  model and results).
  """

  def __init__(self, task, output_dir: str, global_step: tf.Variable, is_chief: bool = True):
    self._task = task
    self._output_dir = output_dir
    self._global_step = global_step
    self._is_chief = is_chief

  def __call__(self, output) -> None:
    if not self._is_chief:
      return
    step = int(self._global_step.numpy())
    writer = getattr(self._task, "write_evaluation", None)
    paths = writer(self._output_dir, step) if writer else {}
    if paths:
      logging.info("eval | step %d | wrote %s", step, ", ".join(str(p) for p in paths.values()))
