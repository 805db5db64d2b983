"""Dataclass configs of this package's models and experiments, as Model Garden's official/vision/configs."""
