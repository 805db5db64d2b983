"""Open Images annotation files, read without TensorFlow: streaming readers and their read report."""
