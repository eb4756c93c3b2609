"""Tests of the landmark metrics: point errors, SDR/outliers, IPE, identification rate, Ignite metrics, reports."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from mlm.metrics import (
    HAND_XRAY_NORMALIZE_PAIR,
    IdentificationRate,
    MeanRadialError,
    identification_rate,
    identification_rate_per_landmark,
    identified_landmarks,
    per_landmark_table,
    point_errors,
    summarize_errors,
    write_metrics_csv,
    write_metrics_json,
)

NAN = np.nan


def test_point_errors_spacing_missing_gt_and_missing_prediction():
    true = np.array([[[0.0, 0.0], [10.0, 10.0], [NAN, NAN], [5.0, 5.0]]])
    pred = np.array([[[3.0, 4.0], [10.0, 12.0], [1.0, 1.0], [NAN, NAN]]])
    e = point_errors(pred, true)
    assert e[0, 0] == 5.0 and e[0, 1] == 2.0
    assert np.isnan(e[0, 2]) and np.isinf(e[0, 3])
    e_mm = point_errors(torch.tensor(pred), torch.tensor(true), spacing=[0.5, 2.0])
    assert e_mm[0, 0] == pytest.approx(math.hypot(1.5, 8.0))
    assert e_mm[0, 1] == pytest.approx(4.0)
    e_b = point_errors(pred, true, spacing=[[0.5, 2.0]])
    np.testing.assert_array_equal(e_b, e_mm)


def test_point_errors_normalised_to_wrist_width():
    true = np.zeros((1, 6, 2))
    true[0, 1] = [0.0, 0.0]
    true[0, 5] = [0.0, 25.0]  # wrist width 25 -> errors doubled to a 50 mm reference
    pred = true.copy()
    pred[0, 3] += [3.0, 4.0]
    e = point_errors(pred, true, normalize_pair=HAND_XRAY_NORMALIZE_PAIR)
    assert e[0, 3] == pytest.approx(10.0)
    true[0, 5] = NAN
    with pytest.raises(ValueError, match=r"image\(s\) \[0\]"):
        point_errors(pred, true, normalize_pair=(1, 5))


def test_summary_counts_sdr_at_exact_radius_and_outliers():
    # image 0: errors 2.0 (exactly at r=2: success), 2.5, 10.0; image 1: 0.5, missing GT, missing prediction
    e = np.array([[2.0, 2.5, 10.0], [0.5, NAN, np.inf]])
    s = summarize_errors(e, radii=(2, 2.5, 10))
    assert s["count"] == 5 and s["num_missing_predictions"] == 1 and s["num_images"] == 2
    finite = np.array([2.0, 2.5, 10.0, 0.5])
    assert s["pe_mean"] == pytest.approx(finite.mean())
    assert s["pe_std"] == pytest.approx(finite.std())  # ddof 0
    assert s["pe_median"] == pytest.approx(2.25)
    assert s["pe_max"] == 10.0
    assert s["sdr"] == {"2": pytest.approx(2 / 5), "2.5": pytest.approx(3 / 5), "10": pytest.approx(4 / 5)}
    assert s["outliers"] == {"2": 3, "2.5": 2, "10": 1}  # > r; the inf counts as an outlier everywhere
    assert s["outlier_rate"]["2"] == pytest.approx(3 / 5)
    assert s["ipe"] == pytest.approx([14.5 / 3, 0.5])
    assert s["ipe_mean"] == pytest.approx((14.5 / 3 + 0.5) / 2)
    assert s["ipe_std"] == pytest.approx(np.std([14.5 / 3, 0.5]))


def test_per_landmark_table_rows():
    e = np.array([[1.0, 3.0], [2.0, NAN], [4.0, np.inf]])
    rows = per_landmark_table(e, names=["sella", "nasion"], radii=(2, 4))
    assert rows[0]["name"] == "sella" and rows[0]["count"] == 3
    assert rows[0]["pe_mean"] == pytest.approx(7 / 3) and rows[0]["sdr_2"] == pytest.approx(2 / 3)
    assert rows[0]["sdr_4"] == pytest.approx(1.0)
    assert rows[1]["count"] == 2 and rows[1]["num_missing_predictions"] == 1
    assert rows[1]["pe_mean"] == 3.0 and rows[1]["sdr_4"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="names"):
        per_landmark_table(e, names=["a"])


def spine(n=4, gap=25.0):
    """n vertebra centres along z, gap mm apart, one image."""
    return np.array([[[0.0, 0.0, i * gap] for i in range(n)]])


def test_identification_rate_swaps_distance_threshold_and_missing():
    true = spine()
    pred = true.copy()
    pred[0, [1, 2]] = true[0, [2, 1]]  # two adjacent vertebrae swapped -> both wrong
    assert identified_landmarks(pred, true).tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert identification_rate(pred, true) == pytest.approx(0.5)

    for offset, expected in ((19.9, 1.0), (20.0, 1.0), (20.01, 0.0)):
        true_far = spine(gap=100.0)  # far neighbours: only the 20 mm threshold decides
        p = true_far.copy()
        p[0, 1, 0] += offset
        assert identified_landmarks(p, true_far)[0, 1] == expected, offset

    # 12 mm off but nearer to the next vertebra (gap 20): wrong even though within 20 mm
    true = spine(gap=20.0)
    p = true.copy()
    p[0, 1, 2] += 12.0
    assert identified_landmarks(p, true)[0, 1] == 0.0
    # missing GT excluded (and not a competitor); missing prediction wrong
    true_m = true.copy()
    true_m[0, 2] = NAN
    ok = identified_landmarks(p, true_m)
    assert np.isnan(ok[0, 2]) and ok[0, 1] == 1.0
    p[0, 3] = NAN
    assert identification_rate(p, true_m) == pytest.approx(2 / 3)
    # landmark 1: right in image 0 (its competitor is missing there), wrong in image 1; landmark 2 only in image 1
    per = identification_rate_per_landmark(np.concatenate([p, p]), np.concatenate([true_m, true]))
    np.testing.assert_allclose(per, [1.0, 0.5, 1.0, 0.0])


def _run_engine(metric, batches):
    engine = Engine(lambda e, batch: batch)
    metric.attach(engine, "m")
    return engine.run(batches).metrics["m"]


def test_ignite_metrics_through_an_engine_match_functions():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, size=(5, 4, 3))
    pred = true + rng.normal(0, 8, size=true.shape)
    pred[1, 2] = NAN
    true[3, 0] = NAN
    batches = [(torch.tensor(pred[:2]), torch.tensor(true[:2])), (torch.tensor(pred[2:]), torch.tensor(true[2:]))]
    mre = MeanRadialError()
    assert _run_engine(mre, batches) == pytest.approx(summarize_errors(point_errors(pred, true))["pe_mean"], rel=1e-12)
    assert mre.num_missing_predictions == 1
    idr = _run_engine(IdentificationRate(max_dist=20.0), batches)
    assert idr == pytest.approx(identification_rate(pred, true))
    # decollated (MONAI-style) lists of (N, D) and an output_transform picking dict keys
    dict_batches = [
        {"pred": list(torch.tensor(pred[i : i + 1])), "label": list(torch.tensor(true[i : i + 1]))} for i in range(5)
    ]
    mre2 = MeanRadialError(output_transform=lambda o: (o["pred"], o["label"]))
    assert _run_engine(mre2, dict_batches) == pytest.approx(mre.compute(), rel=1e-12)


def test_ignite_metric_as_monai_evaluator_key_metric():
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine

    true = torch.tensor(spine(gap=30.0), dtype=torch.float32).repeat(2, 1, 1)
    loader = [{"image": true + 1.0, "label": true}]  # the "network" predicts the input: 1.0 per axis off
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=torch.nn.Identity(),
        key_val_metric={"mre": MeanRadialError(output_transform=from_engine(["pred", "label"]))},
        additional_metrics={"id_rate": IdentificationRate(output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()
    assert evaluator.state.metrics["mre"] == pytest.approx(math.sqrt(3.0), rel=1e-6)
    assert evaluator.state.metrics["id_rate"] == 1.0


def test_report_writers_are_valid_json_and_csv(tmp_path):
    s = summarize_errors(np.array([[1.0, NAN, np.inf]]))
    p = write_metrics_json(tmp_path / "summary.json", s)
    loaded = json.loads(p.read_text(encoding="utf-8"))
    assert loaded["count"] == 2 and loaded["ipe"] == [1.0] and loaded["sdr"]["2"] == 0.5
    rows = per_landmark_table(np.array([[1.0, 2.0]]), names=["a", "b"])
    c = write_metrics_csv(tmp_path / "table.csv", rows)
    read = list(csv.DictReader(c.open()))
    assert [r["name"] for r in read] == ["a", "b"] and float(read[1]["pe_mean"]) == 2.0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["summary.json", "table.csv"]  # no temp files left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_metrics_json(tmp_path / "missing" / "s.json", s)


def test_identification_rate_on_real_csi2014_centroids(shared_data):
    """Real spine configurations: GT vs itself identifies everything; predicting the next vertebra identifies nothing."""
    path = shared_data / "csi2014_spine_centroids_payer" / "points_world_coordinates.csv"
    table = np.genfromtxt(path, delimiter=",")
    true = table[:, 1:].reshape(len(table), 26, 3)
    assert identification_rate(true, true) == 1.0
    shifted = np.full_like(true, np.nan)
    shifted[:, :-1] = true[:, 1:]  # every prediction lands on the vertebra below
    ok = identified_landmarks(shifted, true)
    assert np.nansum(ok) == 0
    # adjacent centroids are more than 20 mm apart in thoracolumbar spines, so a 10 mm error along z keeps most IDs
    nudged = true + np.array([0.0, 0.0, 10.0])
    rate = identification_rate(nudged, true)
    assert 0.5 < rate < 1.0
