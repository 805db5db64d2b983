"""Runs `oi_models.serving.detect` (installed as a console script; this file runs from a checkout)."""

from oi_models.serving.detect import run

if __name__ == "__main__":
  run()
