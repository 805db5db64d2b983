"""The shared trainer in this process: the training step is traced once, and resumes keep that.

A `tf.function` whose first call creates variables is traced twice; the optimizer used to create its
slots in the first step, which doubled the costliest trace of every run (`trainer.
create_optimizer_variables`). The count is of Python calls of the task's `train_step`: each one is a
trace (a traced step runs as a graph after that).
"""

import pytest
from official.core import task_factory

from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from oi_models.tasks import trainer
from tests.tasks import sample_data

SMALL = {"model": {"input_size": [32, 32, 3]},
         "train_data": {"global_batch_size": 8}, "validation_data": {"global_batch_size": 8}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return sample_data.build(tmp_path_factory.mktemp("trainer_sample"), num_images=40, image_size=64)


def _traces_of_train_step(monkeypatch, params):
  task_cls = type(task_factory.get_task(params.task))
  calls = []
  original = task_cls.train_step

  def counted(self, *args, **kwargs):
    calls.append(1)
    return original(self, *args, **kwargs)

  monkeypatch.setattr(task_cls, "train_step", counted)
  return calls


def test_training_step_is_traced_once_and_again_once_after_a_resume(data_dir, tmp_path, monkeypatch):
  def params(steps):
    return sample_data.experiment_params("oi_classifier_tiny", data_dir, task=SMALL, trainer={
        "train_steps": steps, "steps_per_loop": 2, "summary_interval": 2,
        "checkpoint_interval": 2})

  calls = _traces_of_train_step(monkeypatch, params(4))
  model_dir = str(tmp_path / "run")
  trainer.run_experiment(params(4), model_dir, "train")
  assert len(calls) == 1  # two loops of two steps, one trace
  calls.clear()
  # Resumed: the slots restored into the variables made before the first step, still one trace.
  trainer.run_experiment(params(6), model_dir, "train")
  assert len(calls) == 1


def test_optimizer_variables_exist_before_the_first_step(data_dir):
  params = sample_data.experiment_params("oi_classifier_tiny", data_dir, task=SMALL)
  task = task_factory.get_task(params.task)
  built = trainer.build_trainer(params, task, "train", "")
  optimizer, model = built.optimizer, built.model
  slots = {optimizer.get_slot(v, name).ref() for v in model.trainable_variables
           for name in optimizer.get_slot_names()}
  assert optimizer.get_slot_names() and len(slots) == len(model.trainable_variables) * len(
      optimizer.get_slot_names())
  assert int(optimizer.iterations.numpy()) == 0
