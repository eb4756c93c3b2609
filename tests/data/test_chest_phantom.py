"""Chest X-ray phantom: determinism, landmarks on lung-field edges, GU2Net layout read back, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from mlm.data import chest
from mlm.data.datalist import load_datalist, read_datalist_json, validate_datalist
from mlm.data.phantoms.chest import CHEST_LANDMARKS, chest_phantom_id, generate_chest_xray, write_chest_phantom
from transforms.io.landmark_files import read_landmark_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chest_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("chest")
    write_chest_phantom(out, num_images=6, seed=4, size=(96, 112), show_progress=False)
    return out


def test_same_seed_identical_different_seed_differs():
    a = generate_chest_xray(np.random.default_rng([1, 0]))
    b = generate_chest_xray(np.random.default_rng([1, 0]))
    c = generate_chest_xray(np.random.default_rng([2, 0]))
    assert a.image.shape == (256, 256) and a.image.dtype == np.uint8
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert not np.array_equal(a.image, c.image) and not np.allclose(a.landmarks, c.landmarks)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [(256, 256), (128, 160)])
def test_landmarks_inside_on_lung_field_edges(seed, size):
    ph = generate_chest_xray(np.random.default_rng([seed, 5]), size=size)
    w, h = size
    assert ph.image.shape == (w, h) and ph.landmarks.shape == (6, 2)
    assert np.all(ph.landmarks >= 0) and np.all(ph.landmarks <= [w - 1, h - 1])
    img = ph.image.astype(np.float64)
    grad = np.hypot(*np.gradient(gaussian_filter(img, 1.0)))
    median = float(np.median(grad))
    gx, gy = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")
    outside_body = img[~ph.body_mask].mean()
    lung, tissue = img[ph.lung_mask].mean(), img[ph.body_mask & ~ph.lung_mask].mean()
    assert outside_body < lung < tissue - 40, (outside_body, lung, tissue)  # dark lungs in a bright thorax
    for k, (x, y) in enumerate(ph.landmarks):
        d2 = (gx - x) ** 2 + (gy - y) ** 2
        near = grad[d2 <= 2.0**2].max()
        assert near > 3.0 * median, f"{CHEST_LANDMARKS[k]}: gradient {near:.1f} near the point, median {median:.1f}"
        ring = ph.lung_mask[d2 <= 3.0**2]  # the point is on the lung field's boundary
        assert ring.any() and not ring.all(), CHEST_LANDMARKS[k]
    # extremes of each lung field: the apex is its highest pixel, the costophrenic angle its lowest
    for apex, costo, side in ((0, 1, gx < w / 2), (3, 4, gx >= w / 2)):
        ys = gy[ph.lung_mask & side]
        assert ys.min() >= ph.landmarks[apex, 1] - 1.0 and ys.max() <= ph.landmarks[costo, 1] + 1.0
    # anatomy: the patient's right lung is on the image's left, apices above the diaphragm corners
    assert ph.landmarks[:3, 0].max() < ph.landmarks[3:, 0].min()
    assert ph.landmarks[[0, 3], 1].max() < ph.landmarks[[1, 2, 4, 5], 1].min()


def test_layout_round_trips_through_chest_reader(chest_dir):
    ids = [chest_phantom_id(i) for i in range(6)]
    assert ids[0] == "CHNCXR_0001_0"
    assert sorted(p.stem for p in (chest_dir / "pngs").glob("*.png")) == ids
    assert sorted(p.stem for p in (chest_dir / "labels").glob("*.txt")) == ids
    lines = (chest_dir / "labels" / f"{ids[0]}.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "6" and len(lines) == 7
    dl_path = chest_dir / "datalist.json"
    # 6 images: 4 training, 1 validation, 1 test, in id order (GU2Net's scheme, the other phantoms' sizes)
    assert validate_datalist(dl_path) == {"training": 4, "validation": 1, "test": 1}
    raw = read_datalist_json(dl_path)
    assert raw["landmark_names"] == list(CHEST_LANDMARKS) and raw["name"] == "chest_phantom"
    assert [it["id"] for s in ("training", "validation", "test") for it in raw[s]] == ids
    for item in load_datalist(dl_path):
        with Image.open(item["image"]) as im:
            assert im.mode == "L" and im.size == (96, 112)
            image = np.asarray(im).T  # (W, H)
        ratios = chest.read_chest_txt(chest_dir / "labels" / f"{item['id']}.txt")
        pts = read_landmark_file(item["landmarks"]).points
        np.testing.assert_allclose(pts, ratios * [96, 112], rtol=0, atol=1e-9)
        ph = generate_chest_xray(np.random.default_rng([4, ids.index(item["id"])]), size=(96, 112))
        np.testing.assert_array_equal(image, ph.image)
        np.testing.assert_allclose(pts, ph.landmarks, rtol=0, atol=1e-9)


def test_refuses_stale_labels_and_non_empty_folder(chest_dir, tmp_path):
    with pytest.raises(FileExistsError, match="not empty"):
        write_chest_phantom(chest_dir, num_images=2, show_progress=False)
    with pytest.raises(FileExistsError, match=r"labels: holds 4 label file\(s\) this run does not write"):
        write_chest_phantom(chest_dir, num_images=2, seed=4, overwrite=True, show_progress=False)
    # a re-run with the same ids is fine
    path = write_chest_phantom(tmp_path, num_images=3, seed=1, size=(64, 64), show_progress=False)
    write_chest_phantom(tmp_path, num_images=3, seed=1, size=(64, 64), overwrite=True, show_progress=False)
    assert validate_datalist(path) == {"training": 1, "validation": 1, "test": 1}


def test_convert_chest_split_and_names(chest_dir, tmp_path):
    (path,) = chest.convert_chest(chest_dir, tmp_path / "a", split=(3, 2))
    raw = read_datalist_json(path)
    assert [len(raw[s]) for s in ("training", "validation", "test")] == [3, 2, 1]
    assert raw["landmark_names"] == [f"L{k}" for k in range(6)]  # GU2Net names none
    assert raw["training"][0]["id"] == "CHNCXR_0001_0" and raw["test"][0]["id"] == "CHNCXR_0006_0"
    (path,) = chest.convert_chest(chest_dir, tmp_path / "b", landmark_names=CHEST_LANDMARKS)
    assert validate_datalist(path) == {"training": 6}
    with pytest.raises(ValueError, match=r"split \(5, 2\) \(training, validation\) does not fit 6 labelled images"):
        chest.convert_chest(chest_dir, tmp_path / "c", split=(5, 2))
    with pytest.raises(ValueError, match="3 landmark names given, expected 6"):
        chest.convert_chest(chest_dir, tmp_path / "d", landmark_names=["a", "b", "c"])
    assert chest.GU2NET_SPLIT == (195, 34)


def test_cli_chest_subcommand(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("generate_phantoms", ROOT / "scripts" / "generate_phantoms.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "chest"
    argv = ["chest", "--out", str(out), "--num-images", "3", "--seed", "2", "--size", "80", "72", "--no-progress"]
    assert mod.main(argv) == 0
    assert f"wrote {out / 'datalist.json'}" in capsys.readouterr().out
    assert validate_datalist(out / "datalist.json") == {"training": 1, "validation": 1, "test": 1}
    with Image.open(out / "pngs" / "CHNCXR_0003_0.png") as im:
        assert im.size == (80, 72)
    ph = generate_chest_xray(np.random.default_rng([2, 2]), size=(80, 72))
    np.testing.assert_allclose(chest.read_chest_txt(out / "labels" / "CHNCXR_0003_0.txt"), ph.ratios, atol=1e-15)
    item = json.loads((out / "datalist.json").read_text(encoding="utf-8"))["test"][0]
    assert item["image"] == "pngs/CHNCXR_0003_0.png" and item["units"] == "px"
