"""tf.data input pipelines over a built `open_images` dataset: example order, samplers, model inputs."""
