"""Trains the tiny classifier under a real strategy in this process; writes what the test checks.

  python -m tests.tasks.distributed_run <data_dir> <model_dir> <out.npz> <class_list> <mode> [key=value...]

`experiment=<name>` among the overrides picks another experiment (the tiny detector); class_list `-`
sets none. The one-batch loss check runs for the classifier only.

The strategy comes from the overrides (`runtime.distribution_strategy=...`, TF_CONFIG for
multi-worker). Writes every trainable variable of the model as seen by each local replica, the number
of replicas, and (mirrored) the loss of one global batch summed over the replicas' shares next to the
loss of the same logits as one batch.
"""

import sys

import numpy as np


def main(data_dir, model_dir, out, class_list, mode, *overrides):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from official.core import exp_factory  # pylint: disable=import-outside-toplevel
  from official.modeling import hyperparams  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import registry_imports  # pylint: disable=import-outside-toplevel,unused-import
  from oi_models.tasks import trainer  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import strategies  # pylint: disable=import-outside-toplevel
  from tests.tasks import sample_data  # pylint: disable=import-outside-toplevel

  experiment = "oi_classifier_tiny"
  for override in overrides:
    if override.startswith("experiment="):
      experiment = override.split("=", 1)[1]
  overrides = [o for o in overrides if not o.startswith("experiment=")]
  params = exp_factory.get_exp_config(experiment)
  params.override(sample_data.data_override(data_dir), is_strict=True)
  if class_list != "-":
    params.override({"task": {"class_list": class_list}}, is_strict=True)
  params = hyperparams.override_params_dict(params, ",".join(overrides), is_strict=True)
  strategy = strategies.build_strategy(params.runtime)
  model, _ = trainer.run_experiment(params, model_dir, mode, strategy=strategy)

  arrays = {"num_replicas": np.array(strategy.num_replicas_in_sync)}
  for i, var in enumerate(model.trainable_variables):
    for r, value in enumerate(strategy.experimental_local_results(var)):
      arrays[f"var{i}_replica{r}"] = value.numpy()

  if (experiment == "oi_classifier_tiny" and isinstance(strategy, tf.distribute.MirroredStrategy)
      and strategy.num_replicas_in_sync > 1):
    # One global batch: per-replica loss shares summed, against the loss of the whole batch at once.
    from official.core import task_factory  # pylint: disable=import-outside-toplevel
    task = task_factory.get_task(params.task)
    dataset = task.build_inputs(params.task.train_data)
    images, labels = next(iter(dataset))
    shards = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((images, labels)).unbatch().batch(
            params.task.train_data.global_batch_size))

    @tf.function
    def shared(batch):
      def replica_fn(x, y):
        logits = model(x, training=False)  # Each replica's own batch-norm moving statistics.
        return task.build_losses(y, logits) / strategy.num_replicas_in_sync, logits
      shares, logits = strategy.run(replica_fn, args=batch)
      return (strategy.reduce(tf.distribute.ReduceOp.SUM, shares, axis=None),
              strategy.experimental_local_results(logits))

    total, logits = shared(next(iter(shards)))
    arrays["replica_batch_sizes"] = np.array([len(x) for x in logits])
    arrays["loss_over_replicas"] = np.array(float(total))
    # The same logits as one batch on one replica (outside strategy.run).
    arrays["loss_one_device"] = np.array(float(task.build_losses(labels, tf.concat(logits, 0))))
  np.savez(out, **arrays)


if __name__ == "__main__":
  main(*sys.argv[1:])
