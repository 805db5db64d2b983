"""Model Garden tasks and experiment registrations; `oi-train` (train.py) runs them.

`import oi_models.tasks.registry_imports` registers every task and experiment of the package with
Model Garden's `task_factory` and `exp_factory` (this package itself imports nothing, so `oi-train
--help` starts without TensorFlow).
"""
