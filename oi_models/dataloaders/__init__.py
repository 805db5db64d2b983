"""tf.data input pipelines over a built `open_images` dataset: example order, samplers, model inputs."""

from oi_models.modeling import tracing as _tracing

_tracing.skip_autograph_conversion()  # before anything here is traced
