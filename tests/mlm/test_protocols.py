"""Evaluation protocols (mlm.protocols, scripts/evaluate_protocol.py) on synthetic predictions with hand-computed numbers.

Predictions are written with the bundles' own writer (:func:`transforms.io.prediction_files.landmark_record`, world
mm, LPS), so the file format round trip is part of every test. The ground truth is checked against the bundles'
evaluation pipeline on the four phantoms.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mlm.data.datalist import write_datalist
from mlm.protocols import evaluate_protocol, format_markdown, ground_truth_world, write_protocol_report
from transforms.io.landmark_files import write_landmark_file
from transforms.io.prediction_files import landmark_record

REPO = Path(__file__).resolve().parents[2]
NAN = np.nan


def write_prediction(folder: Path, item_id: str, world_ras: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{item_id}_landmarks.json"
    path.write_text(json.dumps(landmark_record(np.asarray(world_ras, dtype=float))), encoding="utf-8")
    return path


def offset(points: np.ndarray, errors: list[float], direction=(1.0, 0.0)) -> np.ndarray:
    """``points`` moved by ``errors[k]`` mm along ``direction`` (NaN error: no prediction)."""
    u = np.asarray(direction, dtype=float)
    u = u / np.linalg.norm(u)
    out = np.asarray(points, dtype=float) + np.asarray(errors, dtype=float)[:, None] * u
    return out


# --------------------------------------------------------------------------------------------------------- ISBI 2015
@pytest.fixture
def isbi(tmp_path):
    """2 landmarks, voxel files with 0.1 mm pixel spacing (like the ISBI converter's output), 480 x 440 px BMPs."""
    from PIL import Image

    root = tmp_path / "isbi"
    (root / "images").mkdir(parents=True)
    gt_px = {
        "151": [[100.0, 200.0], [300.0, 400.0]],
        "152": [[110.0, 210.0], [310.0, 410.0]],
        "301": [[120.0, 220.0], [320.0, 420.0]],
        "001": [[10.0, 20.0], [30.0, 40.0]],
    }
    items = {}
    for i, px in gt_px.items():
        write_landmark_file(root / "landmarks" / f"{i}.json", px, "voxel", names=["S", "N"])
        Image.fromarray(np.zeros((440, 480), np.uint8)).save(root / "images" / f"{i}.bmp")  # MONAI: (1, 480, 440)
        items[i] = {"id": i, "image": f"images/{i}.bmp", "landmarks": f"landmarks/{i}.json", "spacing": [0.1, 0.1]}
    write_datalist(
        root / "datalist.json",
        {
            "name": "isbi",
            "spatial_dims": 2,
            "num_landmarks": 2,
            "landmark_names": ["S", "N"],
            "training": [items["001"]],
            "test1": [items["151"], items["152"]],
            "test2": [items["301"]],
            "test": [items["151"], items["152"], items["301"]],
        },
    )
    pred = tmp_path / "run" / "predictions"
    mm = {i: np.asarray(p) * 0.1 for i, p in gt_px.items()}
    # Test1 errors 1, 1.8 | 2.7, 3.5 mm; Test2 errors 3.9 mm and a missing prediction; training image: ignored
    write_prediction(pred, "151", offset(mm["151"], [1.0, 1.8], (0.6, 0.8)))
    write_prediction(pred, "152", offset(mm["152"], [2.7, 3.5], (-1.0, 0.0)))
    write_prediction(pred, "301", offset(mm["301"], [3.9, NAN], (0.0, 1.0)))
    write_prediction(pred, "001", offset(mm["001"], [50.0, 50.0]))
    return root / "datalist.json", tmp_path / "run"


def test_isbi2015_test1_test2_tables(isbi, tmp_path):
    datalist, run = isbi
    res = evaluate_protocol("isbi2015", [run], [datalist])  # the bundle's output_dir: predictions/ is found
    assert [g["name"] for g in res["groups"]] == ["Test1", "Test2"] and res["units"] == "mm"
    t1, t2 = (g["summary"] for g in res["groups"])
    # Test1 errors 1, 1.8, 2.7, 3.5: mean 2.25, population SD sqrt(3.53 / 4)
    assert t1["num_images"] == 2 and t1["count"] == 4
    assert t1["pe_mean"] == pytest.approx(2.25) and t1["pe_std"] == pytest.approx(math.sqrt(0.8825))
    assert t1["sdr"] == pytest.approx({"2": 0.5, "2.5": 0.5, "3": 0.75, "4": 1.0})
    # Test2: 3.9 mm and a missing prediction (a failure, not in the mean)
    assert t2["pe_mean"] == pytest.approx(3.9) and t2["pe_std"] == 0.0 and t2["num_missing_predictions"] == 1
    assert t2["sdr"] == pytest.approx({"2": 0.0, "2.5": 0.0, "3": 0.0, "4": 0.5})
    md = format_markdown(res)
    assert "| Test1 | prediction | 2 | 2.25 ± 0.94 | 50.00% | 50.00% | 75.00% | 100.00% |" in md
    assert "| Test2 | prediction | 1 | 3.90 ± 0.00 | 0.00% | 0.00% | 0.00% | 50.00% |" in md
    assert "1 landmarks with ground truth have no prediction" in md
    # only the test sets that have predictions are tabulated
    only = evaluate_protocol("isbi2015", [run / "predictions"], [datalist], splits=["test1"])
    assert [g["name"] for g in only["groups"]] == ["Test1"]


def test_isbi2015_missing_prediction_file(isbi):
    datalist, run = isbi
    (run / "predictions" / "152_landmarks.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"group 'Test1': no prediction file for 1 of 2 .*'152'"):
        evaluate_protocol("isbi2015", [run], [datalist])
    res = evaluate_protocol("isbi2015", [run], [datalist], allow_missing=True)
    t1 = res["groups"][0]["summary"]
    assert t1["num_missing_predictions"] == 2 and t1["pe_mean"] == pytest.approx(1.4)
    assert t1["sdr"]["2"] == pytest.approx(0.5) and t1["images_without_prediction_file"] == ["152"]


def _cli():
    spec = importlib.util.spec_from_file_location("evaluate_protocol", REPO / "scripts" / "evaluate_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_report_files_and_cli(isbi, tmp_path, capsys):
    datalist, run = isbi
    out = tmp_path / "report"
    args = ["isbi2015", "--datalist", str(datalist), "--out", str(out), "--method", "SCN"]
    assert _cli()(args + ["--predictions", str(run / "predictions")]) == 0
    printed = capsys.readouterr().out
    assert "| Test1 | SCN | 2 | 2.25 ± 0.94 | 50.00% | 50.00% | 75.00% | 100.00% |" in printed
    names = {p.name for p in out.iterdir()}
    assert names == {
        "table.md",
        "table.csv",
        "summary.json",
        "per_landmark_test1.csv",
        "per_landmark_test2.csv",
        "errors_per_image.csv",
        "cumulative_ipe.png",
    }  # and no temporary files left behind
    assert (out / "table.md").read_text(encoding="utf-8") in printed
    rows = list(csv.DictReader(open(out / "table.csv", encoding="utf-8")))
    assert [r["group"] for r in rows] == ["Test1", "Test2"] and float(rows[0]["sdr_3"]) == pytest.approx(0.75)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["groups"][1]["summary"]["ids"] == ["301"] and summary["settings"]["radii"] == [2, 2.5, 3, 4]
    per_image = list(csv.DictReader(open(out / "errors_per_image.csv", encoding="utf-8")))
    assert [(r["group"], r["id"]) for r in per_image] == [("Test1", "151"), ("Test1", "152"), ("Test2", "301")]
    assert float(per_image[1]["N"]) == pytest.approx(3.5) and per_image[2]["N"] == "inf"
    per_lm = list(csv.DictReader(open(out / "per_landmark_test1.csv", encoding="utf-8")))
    assert [r["name"] for r in per_lm] == ["S", "N"] and float(per_lm[0]["pe_mean"]) == pytest.approx(1.85)
    # errors name the problem and return 1
    assert _cli()(args + ["--predictions", str(tmp_path / "nowhere")]) == 1
    assert "nowhere does not exist" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------------------- hand X-ray
def _hand_case(root: Path, item_id: str, wrist_mm: float, errors: list[float]) -> tuple[dict, np.ndarray]:
    """A 2D NIfTI (0.25 mm, shifted origin) with 6 voxel landmarks; landmarks 1 and 5 are ``wrist_mm`` apart."""
    affine = np.diag([0.25, 0.25, 1.0, 1.0])
    affine[:2, 3] = [-30.0, 12.0]
    (root / "images").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((600, 600), np.uint8), affine), root / "images" / f"{item_id}.nii.gz")
    px = np.array([[100, 100], [200, 100], [150, 300], [250, 350], [300, 200], [200, 100 + 4 * wrist_mm]], float)
    write_landmark_file(root / "landmarks" / f"{item_id}.csv", px, "voxel")
    world = px * 0.25 + [-30.0, 12.0]
    item = {"id": item_id, "image": f"images/{item_id}.nii.gz", "landmarks": f"landmarks/{item_id}.csv"}
    return item, offset(world, errors, (3.0, -4.0))


#: raw errors (mm) per fold image and wrist widths: scale 50 / wrist = 2, 1, 0.5
HAND = {
    "h1": (25.0, [0.5, 0.0, 0.75, 1.5, 3.0, 0.0]),  # normalised 1, 0, 1.5, 3, 6, 0
    "h2": (50.0, [1.0, 1.0, 5.0, 11.0, 0.0, 0.0]),  # 1, 1, 5, 11, 0, 0
    "h3": (100.0, [2.0, 3.0, 7.0, 0.0, 0.0, 24.0]),  # 1, 1.5, 3.5, 0, 0, 12
}
HAND_NORMALISED = [1, 0, 1.5, 3, 6, 0, 1, 1, 5, 11, 0, 0, 1, 1.5, 3.5, 0, 0, 12]


@pytest.fixture
def hand(tmp_path):
    root = tmp_path / "hand"
    items, folds = {}, []
    for k, (i, (wrist, errors)) in enumerate(HAND.items()):
        items[i], pred = _hand_case(root, i, wrist, errors)
        write_prediction(tmp_path / f"fold{k + 1}" / "predictions", i, pred)
        folds.append(tmp_path / f"fold{k + 1}" / "predictions")
    header = {"name": "hand", "spatial_dims": 2, "num_landmarks": 6}
    write_datalist(root / "datalist.json", {**header, "training": list(items.values())})
    for k, i in enumerate(HAND, 1):
        others = [items[j] for j in HAND if j != i]
        write_datalist(root / f"datalist_cv{k}.json", {**header, "training": others, "test": [items[i]]})
    return root, folds


def test_hand_three_fold_cv_normalised(hand):
    root, folds = hand
    res = evaluate_protocol("hand", folds, [root / "datalist.json"])
    assert [g["name"] for g in res["groups"]] == ["Fold 1", "Fold 2", "Fold 3", "3-fold CV (all)"]
    assert res["units"] == "mm (normalised: landmarks 1-5 = 50)"
    s = res["groups"][-1]["summary"]
    np.testing.assert_allclose(np.sort(res["groups"][-1]["errors"].ravel()), np.sort(HAND_NORMALISED), atol=1e-9)
    assert s["count"] == 18 and s["num_images"] == 3
    assert s["pe_median"] == pytest.approx(1.0) and s["pe_mean"] == pytest.approx(47.5 / 18)
    assert s["pe_std"] == pytest.approx(np.std(HAND_NORMALISED))
    assert s["outliers"] == {"2": 6, "4": 4, "10": 2}
    assert res["groups"][0]["summary"]["pe_mean"] == pytest.approx(11.5 / 6)  # (1 + 0 + 1.5 + 3 + 6 + 0) / 6
    md = format_markdown(res)
    assert f"| prediction, 3-fold CV (all) | 3 | 1.00 | 2.64 ± {np.std(HAND_NORMALISED):.2f} | 6 (33.33%) |" in md
    # the same with one datalist per fold and its test split; GU2Net's pair and no normalisation differ
    per_fold = evaluate_protocol("hand", folds, [root / f"datalist_cv{k}.json" for k in (1, 2, 3)], splits=["test"])
    assert per_fold["groups"][-1]["summary"]["pe_mean"] == pytest.approx(47.5 / 18)
    raw = evaluate_protocol("hand", folds, [root / "datalist.json"], normalize_pair=None)
    assert raw["groups"][-1]["summary"]["pe_mean"] == pytest.approx(sum(sum(e) for _, e in HAND.values()) / 18)
    assert raw["units"] == "mm"


def test_hand_folds_must_not_overlap_and_ids_must_exist(hand, tmp_path):
    root, folds = hand
    with pytest.raises(ValueError, match=r"id 'h1' is evaluated in fold 1 and fold 2"):
        evaluate_protocol("hand", [folds[0], folds[0]], [root / "datalist.json"])
    write_prediction(folds[0], "zz", np.zeros((6, 2)))
    with pytest.raises(ValueError, match=r"predictions for ids not in .*datalist.json: \['zz'\]"):
        evaluate_protocol("hand", folds, [root / "datalist.json"])


# ---------------------------------------------------------------------------------------------------------- CSI 2014
@pytest.fixture
def csi(tmp_path):
    """Two scans in LPS files: s1 (T11..S1, 30 mm apart) and s2 (C1..C7, 20 mm apart), one per fold; 20 mm voxels."""
    from mlm.data.csi2014 import VERTEBRA_NAMES, lps_to_ras

    root = tmp_path / "csi"
    (root / "ct").mkdir(parents=True)
    affine = np.diag([20.0, 20.0, 20.0, 1.0])
    affine[:3, 3] = [-40.0, -40.0, -760.0]
    ct = nib.Nifti1Image(np.zeros((4, 4, 40), np.int16), affine)
    ras = {"s1": np.full((26, 3), NAN), "s2": np.full((26, 3), NAN)}
    for k in range(17, 25):
        ras["s1"][k] = [5.0, -20.0, -30.0 * k]
    for k in range(0, 7):
        ras["s2"][k] = [0.0, 10.0, -20.0 * k]
    pred = {i: np.full((26, 3), 500.0) for i in ras}  # absent slots: far away, excluded
    # s1: T11 5 mm (ok), T12 16 mm towards L1 (nearer L1: wrong), L1 25 mm sideways (> 20: wrong),
    #     L2 no prediction (wrong), L3..S1 0, 1, 2, 3 mm (ok)
    pred["s1"][17:25] = ras["s1"][17:25] + np.array(
        [[0, 0, -5], [0, 0, -16], [25, 0, 0], [0, 0, 0]] + [[0, 0, -e] for e in range(4)]
    )
    pred["s1"][20] = NAN
    # s2: C1..C6 1 mm (ok), C7 30 mm up, between C5 and C6 (wrong)
    pred["s2"][0:7] = ras["s2"][0:7] + np.array([[1, 0, 0]] * 6 + [[0, 0, 30]])
    items, folds = [], []
    for k, i in enumerate(ras):
        write_landmark_file(root / "landmarks" / f"{i}.json", lps_to_ras(ras[i]), "LPS", names=VERTEBRA_NAMES)
        nib.save(ct, root / "ct" / f"{i}.nii.gz")
        items.append({"id": i, "image": f"ct/{i}.nii.gz", "landmarks": f"landmarks/{i}.json"})
        write_prediction(tmp_path / f"fold{k}", i, pred[i])
        folds.append(tmp_path / f"fold{k}")
    write_datalist(
        root / "datalist.json",
        {"name": "csi", "spatial_dims": 3, "num_landmarks": 26, "landmark_names": VERTEBRA_NAMES, "training": items},
    )
    return root / "datalist.json", folds


def test_csi2014_pe_id_rate_regions_and_vertebrae(csi, tmp_path):
    datalist, folds = csi
    res = evaluate_protocol("csi2014", folds, [datalist])
    g = res["groups"][-1]
    s = g["summary"]
    assert g["name"] == "2-fold CV (all)" and s["count"] == 15 and s["num_missing_predictions"] == 1
    # finite errors: 5, 16, 25, 0, 1, 2, 3 (s1) and 1 x 6, 30 (s2): 88 / 14; median 1; > 20 mm: 25, 30, missing
    assert s["pe_mean"] == pytest.approx(88 / 14) and s["pe_median"] == pytest.approx(1.0)
    assert s["outliers"] == {"20": 3}
    assert s["id_rate"] == pytest.approx(11 / 15)
    assert res["groups"][0]["summary"]["id_rate"] == pytest.approx(5 / 8)
    assert res["groups"][1]["summary"]["id_rate"] == pytest.approx(6 / 7)
    regions = {r["region"]: r for r in g["regions"]}
    assert regions["All"]["id_rate"] == pytest.approx(11 / 15)
    assert regions["Cervical"]["count"] == 7 and regions["Cervical"]["pe_mean"] == pytest.approx(36 / 7)
    assert regions["Thoracic"]["id_rate"] == pytest.approx(0.5) and regions["Thoracic"]["pe_mean"] == pytest.approx(
        10.5
    )
    assert regions["Lumbar"]["id_rate"] == pytest.approx(3 / 5) and regions["Lumbar"]["pe_mean"] == pytest.approx(7.0)
    assert regions["Sacral"]["count"] == 1 and regions["Sacral"]["id_rate"] == 1.0
    t12 = next(r for r in g["per_landmark"] if r["name"] == "T12")
    assert t12["pe_mean"] == pytest.approx(16.0) and t12["id_rate"] == 0.0
    md = format_markdown(res)
    assert "#### Per region (2-fold CV (all))" in md and "| Thoracic | 2 | 10.50 | 10.50 ± 5.50 | 0 | 50.00% |" in md
    assert "| T12 | 1 | 16.00 | 16.00 ± 0.00 | 0 | 0.00% |" in md and "| C7 | 1 | 30.00 |" in md
    assert "| S2 |" not in md  # never present: left out of the per-vertebra table
    written = write_protocol_report(res, tmp_path / "out")
    assert written["cumulative_ipe.png"].stat().st_size > 0
    assert "per_landmark_2_fold_cv_all.csv" in written


# ----------------------------------------------------------------------------------------------------------- generic
def test_generic_png_without_spacing_is_px_and_counts_are_checked(tmp_path):
    from PIL import Image

    root = tmp_path / "own"
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(root / "images" / "a.png")  # MONAI: (1, 20, 30)
    (root / "landmarks").mkdir()
    (root / "landmarks" / "a.csv").write_text(
        "# coordinate_system: voxel\nname,x,y\np0,3,4\np1,,\np2,10,10\n", encoding="utf-8"
    )
    write_datalist(
        root / "datalist.json",
        {
            "spatial_dims": 2,
            "num_landmarks": 3,
            "test": [{"id": "a", "image": "images/a.png", "landmarks": "landmarks/a.csv"}],
        },
    )
    gt, unit = ground_truth_world(
        {"id": "a", "image": str(root / "images/a.png"), "landmarks": str(root / "landmarks/a.csv")}, 3, 2
    )
    assert unit == "px"
    np.testing.assert_allclose(gt, [[3, 4], [NAN, NAN], [10, 10]])
    write_prediction(tmp_path / "p", "a", [[0.0, 0.0], [1.0, 1.0], [10.0, 12.0]])
    res = evaluate_protocol("generic", [tmp_path / "p"], [root / "datalist.json"])
    s = res["groups"][0]["summary"]
    assert res["units"] == "px" and s["count"] == 2 and s["pe_mean"] == pytest.approx(3.5)  # errors 5 and 2
    assert s["sdr"]["2"] == 0.5 and s["sdr"]["10"] == 1.0 and "ID rate" not in format_markdown(res)
    write_prediction(tmp_path / "p", "a", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"a_landmarks.json: 4 landmarks in 2D, but the datalist .* has 3"):
        evaluate_protocol("generic", [tmp_path / "p"], [root / "datalist.json"])


def test_hand_image_without_a_wrist_landmark_is_left_out(hand):
    root, folds = hand
    csv_path = root / "landmarks" / "h3.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    csv_path.write_text(
        "\n".join(lines[:-1] + ["5,nan,nan"]) + "\n", encoding="utf-8"
    )  # landmark 5 (wrist) not annotated
    res = evaluate_protocol("hand", folds, [root / "datalist.json"])
    s = res["groups"][-1]["summary"]
    assert s["num_images"] == 2 and s["count"] == 12 and s["normalization_skipped_ids"] == ["h3"]
    assert s["pe_mean"] == pytest.approx((11.5 + 18) / 12)
    assert "1 images without ground truth for a normalisation landmark left out (['h3'])" in format_markdown(res)


# ------------------------------------------------------------------------------------------ ground truth, bundle path
#: phantom writer, its arguments, and the bundle-like preprocessing (spacing mm, spatial size, resize mode)
PHANTOMS = {
    "ceph": ("write_cephalogram_dataset", {"pixel_size": 4.0}, 3.0, [48, 48], "pad_crop"),  # BMP + spacing, voxels
    "hand_xray": ("write_hand_xray_dataset", {"pixel_size": 4.0}, -1.0, [48, 48], "fit"),  # 2D MetaImage, voxels
    "hand_mri": ("write_hand_mri_dataset", {"spacing": 8.0}, 4.0, [24, 16, 32], "pad_crop"),  # NIfTI, LPS
    "spine_ct": ("write_spine_ct_dataset", {"spacing": 8.0, "size_xy": 16}, 4.0, [16, 16, -1], "pad_crop"),
}


def _bundle_evaluation_ground_truth(
    items: list[dict], dims: int, n: int, spacing, size, resize
) -> dict[str, np.ndarray]:
    """World mm of the ground truth as a bundle's ``evaluate.yaml`` computes it: preprocessing with landmarks, a
    ``SupervisedEvaluator`` with ``PrepareLandmarkBatch``, decollated output, ``LandmarksToWorldd`` on the label."""
    import torch
    from ignite.engine import Events
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator
    from monai.transforms import Compose

    from mlm.bundle import landmark_preprocessing
    from mlm.engines import PrepareLandmarkBatch
    from transforms.post import LandmarksToWorldd

    class NoNetwork(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], n, *x.shape[2:])

    preprocessing = Compose(landmark_preprocessing(dims, spacing, size, n, resize=resize))
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(items, preprocessing), batch_size=1, num_workers=0),
        network=NoNetwork(),
        prepare_batch=PrepareLandmarkBatch(num_landmarks=n),
        postprocessing=Compose([LandmarksToWorldd(keys="label", allow_missing_keys=True)]),
    )
    truth: dict[str, np.ndarray] = {}

    @evaluator.on(Events.ITERATION_COMPLETED)
    def collect(engine):
        for item, out in zip(engine.state.batch, engine.state.output):
            truth[str(item["id"])] = np.asarray(out["label"], dtype=np.float64)

    evaluator.run()
    return truth


@pytest.mark.parametrize("dataset", list(PHANTOMS))
def test_protocol_ground_truth_equals_the_bundle_evaluation_ground_truth(dataset, tmp_path):
    import mlm.data.phantoms as phantoms
    from mlm.data.datalist import load_datalist, read_datalist_json

    writer, kwargs, spacing, size, resize = PHANTOMS[dataset]
    datalist = getattr(phantoms, writer)(tmp_path, num_images=3, seed=1, show_progress=False, **kwargs)
    header = read_datalist_json(datalist)
    dims, n = header["spatial_dims"], header["num_landmarks"]
    items = [item for split in ("training", "validation", "test") for item in load_datalist(datalist, split)]
    bundle = _bundle_evaluation_ground_truth(items, dims, n, spacing, size, resize)
    assert sorted(bundle) == sorted(str(item["id"]) for item in items)
    for item in items:
        protocol, unit = ground_truth_world(item, n, dims)
        expected = bundle[str(item["id"])]
        assert unit == "mm" and protocol.shape == expected.shape == (n, dims)
        np.testing.assert_array_equal(np.isnan(protocol), np.isnan(expected))
        assert np.isfinite(protocol).any()
        np.testing.assert_allclose(protocol, expected, rtol=0, atol=1e-6, err_msg=f"{dataset} {item['id']}")
