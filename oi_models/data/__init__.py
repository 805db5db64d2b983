"""Open Images data: annotation readers, the sample dataset maker, the TFDS builder, input pipelines."""
