"""The released classifier's architecture end to end: slim's resnet_v1_101 with 5000 logits, randomly
initialised by the oracle (batch-norm statistics and betas too), converted by the installed
`oi-convert-checkpoint` with the official class-list files, rebuilt from the written config, and
compared with slim's logits on real photos at 299x299 with slim's VGG preprocessing.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np

from tests.conftest import shared_path
from tests.modeling.converters import conftest


def test_resnet_v1_101_through_the_cli_gives_slims_logits(tmp_path):
  oracle = conftest.run_oracle(tmp_path / "slim", "resnet_v1_101", 299)
  # classes-trainable.txt as released: 5000 MIDs, one per line (names from class-descriptions.csv).
  mids = shared_path("class_lists", "tfds", "open_images_classes_trainable.txt").read_text().split()
  classes = tmp_path / "classes-trainable.txt"
  classes.write_text("\n".join(mids[:5000]) + "\n")
  out = tmp_path / "converted"
  done = subprocess.run(
      [pathlib.Path(sys.executable).parent / "oi-convert-checkpoint", "--source=slim_resnet_v1_101",
       f"--checkpoint={oracle['checkpoint']}", f"--class_list={classes}",
       f"--class_descriptions={shared_path('class_lists', 'class-descriptions.csv')}",
       f"--output_dir={out}", "--strict"], capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "used 522 of 522 variables (52,850,504 values); set 522 of 522 model variables" in done.stdout
  report = json.loads((out / "conversion_report.json").read_text())
  assert (report["unused"], report["left_at_init"], report["num_classes"]) == ({}, [], 5000)

  model, task = conftest.build_from_config(out / "config.yaml")
  assert task.model.backbone.slim_resnet_v1.as_dict() == {
      "model_id": 101, "block_repeats": [], "depth_multiplier": 1.0, "batch_norm_scale": True,
      "input_normalization": "vgg", "norm_momentum": 0.997, "norm_epsilon": 1e-5,
      "bn_trainable": True}
  assert (task.model.num_classes, task.model.input_size) == (5000, [299, 299, 3])
  # By hand: convolutions 42,394,816 values (stem 9,408; blocks 212,992 + 1,212,416 + 26,017,792 +
  # 14,942,208), batch norm 4 x 52,672 channels, logits 2048 x 5000 + 5000.
  assert sum(int(np.prod(v.shape)) for v in model.variables) == 42_394_816 + 4 * 52_672 + 10_245_000
  assert len(model.trainable_variables) == 104 * 3 + 2

  got = model(oracle["images"], training=False).numpy()
  difference = conftest.max_relative_difference(got, oracle["logits"])
  print(f"resnet_v1_101: max relative difference {difference:.2e} over {list(oracle['names'])}")
  assert difference <= 1e-4
  # Real photos give different outputs (the check is not passed by a constant map).
  assert np.abs(got[0] - got[1]).max() > 1e-2 * np.abs(got).max()
