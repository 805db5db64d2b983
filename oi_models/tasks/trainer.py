"""Running an experiment: the one training loop of every model of the package.

`run_experiment(params, model_dir, mode)` is Model Garden's `train_lib.run_experiment` (Orbit
controller, checkpoints every `trainer.checkpoint_interval` steps, resume from the latest checkpoint
in `model_dir`, TensorBoard summaries under `model_dir/train` and `model_dir/validation`) with what the
package adds around it, for any registered task:

- strategy and mixed precision from `params.runtime` (`strategies`);
- a `Trainer` that also reports images/s to TensorBoard;
- train actions: stop on a NaN/inf loss before the bad weights are saved, console progress with
  rates and ETA; an eval action: the task's report (metrics.json, per-class table) in `model_dir`;
- initialization from `task.init_checkpoint` (Keras .h5, TF2 or converted checkpoint) when
  `model_dir` has no checkpoint yet, through the task's `initialize`.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Tuple

import tensorflow as tf
import tf_keras
from official.core import base_trainer
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.vision.utils import summary_manager

from oi_models.tasks import actions
from oi_models.tasks import strategies

MODES = ("train", "eval", "train_and_eval", "continuous_eval")


class Trainer(base_trainer.Trainer):
  """Model Garden's trainer; each loop's logs also hold `images_per_second` (global batch)."""

  def train_loop_begin(self):
    super().train_loop_begin()
    self._loop_start = (time.perf_counter(), int(self.global_step.numpy()))

  def train_loop_end(self):
    logs = super().train_loop_end()
    start, first_step = self._loop_start
    steps = int(self.global_step.numpy()) - first_step
    batch = self.config.task.train_data.global_batch_size
    logs["images_per_second"] = steps * batch / max(time.perf_counter() - start, 1e-9)
    return logs


def build_trainer(params, task, mode: str, model_dir: str) -> Trainer:
  """The trainer of `task` (model, optimizer, datasets), in the current strategy's scope."""
  model = task.build_model()
  optimizer = train_utils.create_optimizer(task, params)
  if "train" in mode:
    create_optimizer_variables(optimizer, model.trainable_variables)
  return Trainer(params, task, model=model, optimizer=optimizer,
                 train="train" in mode, evaluate="eval" in mode,
                 checkpoint_exporter=train_utils.maybe_create_best_ckpt_exporter(params, model_dir))


def create_optimizer_variables(optimizer, variables) -> None:
  """Creates the optimizer's step counter, hyperparameters and slots now, not in the first step.

  A `tf.function` whose first call creates variables is traced twice (once creating them, once
  without), and the optimizer's first `apply_gradients` creates its slots: so the whole training
  step, the costliest trace of a run, was traced twice (12 s of the tiny detector's 25 s).
  """
  if isinstance(optimizer, tf_keras.optimizers.legacy.Optimizer):
    optimizer._create_all_weights(variables)  # pylint: disable=protected-access
  else:
    optimizer.build(variables)


def run_experiment(params, model_dir: str, mode: str,
                   strategy: tf.distribute.Strategy | None = None
                   ) -> Tuple[tf_keras.Model, Mapping[str, Any]]:
  """Trains and/or evaluates `params` in `model_dir`; returns (model, last evaluation logs)."""
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
  strategies.set_precision(params.runtime)
  strategy = strategy or strategies.build_strategy(params.runtime)
  if "train" in mode and strategy.extended.should_checkpoint:
    train_utils.serialize_config(params, model_dir)
  with strategy.scope():
    task = task_factory.get_task(params.task, logging_dir=model_dir)
    trainer = build_trainer(params, task, mode, model_dir)
  train_actions = [actions.StopOnNonFiniteLoss(trainer.global_step, model_dir),
                   actions.Progress(trainer.global_step, params.trainer.train_steps,
                                    params.task.train_data.global_batch_size)]
  eval_actions = [actions.WriteEvaluation(task, model_dir, trainer.global_step,
                                          is_chief=strategy.extended.should_checkpoint)]
  return train_lib.run_experiment(
      distribution_strategy=strategy, task=task, mode=mode, params=params, model_dir=model_dir,
      trainer=trainer, train_actions=train_actions, eval_actions=eval_actions,
      eval_summary_manager=summary_manager.maybe_build_eval_summary_manager(params, model_dir))
