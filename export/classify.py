"""Runs `oi_models.serving.classify` (installed as a console script; this file runs from a checkout)."""

from oi_models.serving.classify import run

if __name__ == "__main__":
  run()
