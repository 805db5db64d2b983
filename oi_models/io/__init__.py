"""Open Images annotation files, read without TensorFlow.

`readers` gathers the public names; each job has its module: `csv_engine` (segments, quote guard,
columnar checks, line numbers), `boxes`, `image_labels`, `image_metadata`, `predictions` (one per
file kind), `grouping` (rows by image), `tables`, `image_ids`, `report`, `errors`.
"""
