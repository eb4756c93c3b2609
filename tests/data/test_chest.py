"""GU2Net chest labels: ratio text files -> pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlm.data import chest
from mlm.data.datalist import load_datalist, validate_datalist
from transforms.io.landmark_files import read_landmark_file


def test_convert_ratios_to_pixels(tmp_path):
    (tmp_path / "pngs").mkdir()
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "pngs" / "a.png")  # W=50, H=40
    r = np.linspace(0, 1, 12).reshape(6, 2)
    chest.write_chest_txt(tmp_path / "labels" / "a.txt", r)
    np.testing.assert_array_equal(chest.read_chest_txt(tmp_path / "labels" / "a.txt"), r)
    paths = chest.convert_chest(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match=r"a\.json: 1 landmark\(s\) outside the image .*a\.png of size \(50, 40\)"):
        validate_datalist(paths[0])  # ratio 1.0 of the height is y = 40, beyond the last row's outer face (39.5)
    assert validate_datalist(paths[0], allow_outside=True) == {"training": 1}
    pts = read_landmark_file(load_datalist(paths[0])[0]["landmarks"]).points
    np.testing.assert_allclose(pts, r * [50, 40], atol=1e-12)


def test_count_mismatch_names_file(tmp_path):
    p = tmp_path / "b.txt"
    p.write_text("6\n0.1 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.txt: the first line says 6 landmarks, found 1"):
        chest.read_chest_txt(p)
