"""Runs `oi_models.serving.export_saved_model` (installed as a console script; this file runs from a checkout)."""

from oi_models.serving.export_saved_model import run

if __name__ == "__main__":
  run()
