"""Installs the test oracles into a folder of their own: `python tests/oracles/install.py DIR`.

`pip install --no-deps --target DIR` puts `object_detection` and `tf_slim` there without their stale
requirements. The research sdist also carries slim's `nets/` (the reference feature extractors import
`from nets import inception_resnet_v2`), which its setup.py does not install: it is unpacked from the
same sdist into DIR/slim, which `tests.oracles.run` puts on the path.
"""

import pathlib
import subprocess
import sys
import tarfile
import tempfile

REQUIREMENTS = pathlib.Path(__file__).with_name("requirements.txt")


def main(target: pathlib.Path) -> None:
  pip = [sys.executable, "-m", "pip", "--quiet"]
  subprocess.run([*pip, "install", "--no-deps", "--upgrade", "--target", str(target), "-r",
                  str(REQUIREMENTS)], check=True)
  research = next(line for line in REQUIREMENTS.read_text().splitlines()
                  if line.startswith("tf-models-research-object-detection"))
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([*pip, "download", "--no-deps", "--no-binary", ":all:", "-d", tmp, research],
                   check=True)
    (sdist,) = pathlib.Path(tmp).glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
      members = [m for m in archive.getmembers() if m.name.split("/")[1:2] == ["slim"]]
      for member in members:
        member.name = member.name.split("/", 1)[1]  # drop the sdist's top folder
      archive.extractall(target, members=members, filter="data")


if __name__ == "__main__":
  main(pathlib.Path(sys.argv[1]))
