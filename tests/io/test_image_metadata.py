"""Image metadata: the four rotations, and a projection that reads only the columns asked for."""

import numpy as np

from oi_models.io import readers

HEADER = ",".join(readers.METADATA_COLUMNS)
MD5 = "KFukvivpCM5QXl5SqKe41g=="


def test_every_exif_rotation_is_kept_and_others_skipped(tmp_path):
  rotations = ["0", "90", "180", "270", "45", "360", "", "270.0"]
  path = tmp_path / "m.csv"
  path.write_text("\n".join([HEADER] + [f"{i:016x},train,u,l,lic,p,a,t,1,{MD5},t,{r}"
                                        for i, r in enumerate(rotations)]) + "\n")
  report = readers.ReadReport()
  table = readers.read_image_metadata(path, report=report)
  np.testing.assert_array_equal(table.image_id, [0, 1, 2, 3, 6, 7])
  np.testing.assert_array_equal(table.rotation, [0, 90, 180, 270, np.nan, 270])
  assert report.skipped == {"bad Rotation": 2}


def test_projection_reads_only_image_ids_and_rotation(tmp_path):
  # A file with only the columns a builder needs; the MD5 of the full file's row 2 is bad, but a
  # projection does not decode MD5s, so nothing is skipped.
  slim = tmp_path / "slim.csv"
  slim.write_text("ImageID,Rotation,Title\n00000000000000aa,90,\"a, b\"\n00000000000000ab,,c\n")
  table = readers.read_image_metadata(slim, columns=("Rotation",), strict=True)
  np.testing.assert_array_equal(table.image_id, [0xaa, 0xab])
  np.testing.assert_array_equal(table.rotation, [90, np.nan])
  assert table.title is None and table.original_md5 is None and table.subset is None
  full = tmp_path / "full.csv"
  full.write_text(f"{HEADER}\n00000000000000aa,train,u,l,lic,p,a,t,1,{MD5},t,180\n"
                  "00000000000000ab,train,u,l,lic,p,a,t,1,notbase64!!,t,0\n")
  report = readers.ReadReport()
  table = readers.read_image_metadata(full, columns=("Rotation",), report=report)
  np.testing.assert_array_equal(table.rotation, [180, 0])
  assert not report.skipped
  assert len(readers.read_image_metadata(full, report=readers.ReadReport())) == 1
