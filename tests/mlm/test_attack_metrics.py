"""The attack protocol's pieces on crafted inputs: metrics (exact numbers), isolation, eps units, letters, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from mlm.attacks import (
    PAPER_CHECKPOINTS,
    PGD,
    AdaptiveTargetedIFGSM,
    HeatmapAttackObjective,
    HeatmapOffsetAttackObjective,
    LandmarkOutputDecoder,
    TargetedIFGSM,
    attack_checkpoints,
    attack_errors,
    attack_metrics,
    intensity_eps,
    intensity_value_range,
    isolation_analysis,
    isolation_degree,
    letter_points,
    network_to_original_pixels,
    original_pixels_to_network,
    paper_target_box,
    pearson_correlation,
    protocol_attack,
    read_target_points,
    to_grey_levels,
    write_target_points,
)
from mlm.protocols.attack import attack_bars, attack_markdown, attack_rows

NAN = float("nan")


def test_checkpoints_are_the_papers_up_to_the_iteration_count():
    assert attack_checkpoints(300) == list(PAPER_CHECKPOINTS) == [1, 20, 50, 99, 150, 200, 250, 299]
    assert attack_checkpoints(60) == [1, 20, 50]
    assert attack_checkpoints(2) == [1]
    assert attack_checkpoints(0) == [0]
    assert attack_checkpoints(10, checkpoints=[]) == [10]
    with pytest.raises(ValueError):
        attack_checkpoints(-1)


def _crafted():
    """One image, 4 landmarks in mm: 0 and 1 moved (goals), 2 and 3 stationary (3 without ground truth)."""
    truth = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [NAN, NAN]]])
    goals = np.array([[[30.0, 40.0], [10.0, 20.0], [NAN, NAN], [NAN, NAN]]])
    clean = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 13.0], [5.0, 5.0]]])
    # after the attack: landmark 0 is 3 mm from its goal, landmark 1 is 5 mm from it; landmark 2 moved to 4 mm from
    # its truth
    adv = np.array([[[30.0, 37.0], [13.0, 24.0], [0.0, 14.0], [5.0, 5.0]]])
    return truth, goals, clean, adv


def test_attack_errors_split_moved_and_stationary_landmarks():
    truth, goals, _, adv = _crafted()
    targeted, stationary = attack_errors(adv, goals, truth)
    np.testing.assert_array_equal(np.isnan(targeted), [[False, False, True, True]])
    np.testing.assert_allclose(targeted[0, :2], [3.0, 5.0])
    np.testing.assert_array_equal(np.isnan(stationary), [[True, True, False, True]])
    assert stationary[0, 2] == 4.0
    missing = adv.copy()
    missing[0, 0] = NAN  # a moved landmark the decoder lost is a failure (inf)
    assert math.isinf(attack_errors(missing, goals, truth)[0][0, 0])


def test_attack_metrics_exact_numbers():
    truth, goals, clean, adv = _crafted()
    m = attack_metrics({0: clean, 7: adv}, goals, truth, clean, radius=4.0)
    c = m["clean"]
    assert c["count"] == 3 and c["mre"] == pytest.approx(1.0) and c["medre"] == 0.0 and c["sdr"] == 1.0
    # clean prediction vs goals: |(0,0)-(30,40)| = 50, |(10,0)-(10,20)| = 20
    assert c["targeted_mre"] == pytest.approx(35.0) and c["targeted_medre"] == pytest.approx(35.0)
    assert c["targeted_sdr"] == 0.0 and c["targeted_count"] == 2
    assert c["stationary_mre"] == 3.0 and c["stationary_sdr"] == 1.0 and c["stationary_count"] == 1
    rows = {r["iteration"]: r for r in m["iterations"]}
    assert set(rows) == {0, 7}
    assert rows[7]["targeted_mre"] == pytest.approx(4.0) and rows[7]["targeted_medre"] == pytest.approx(4.0)
    assert rows[7]["targeted_sdr"] == 0.5  # 3 <= 4 succeeds, 5 > 4 fails
    assert rows[7]["stationary_mre"] == 4.0 and rows[7]["stationary_sdr"] == 1.0  # 4 <= 4: success at the radius
    assert rows[0]["targeted_mre"] == c["targeted_mre"]


def test_isolation_degree_and_correlation_on_a_crafted_configuration():
    # five landmarks on a line at 0, 1, 2, 3 and 10 mm, k = 2 nearest neighbours
    truth = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]]])
    degree = isolation_degree(truth, k=2)
    np.testing.assert_allclose(degree[0], [1.5, 1.0, 1.0, 1.5, 7.5])
    # k larger than the other landmarks: all of them; a missing landmark is neither measured nor a neighbour
    truth_missing = truth.copy()
    truth_missing[0, 4] = NAN
    np.testing.assert_allclose(isolation_degree(truth_missing, k=5)[0, :4], [2.0, 4 / 3, 4 / 3, 2.0])
    assert np.isnan(isolation_degree(truth_missing, k=5)[0, 4])
    # attack errors growing linearly with the isolation: r = 1; the never-moved landmark 1 is left out
    errors = np.array([[3.0, NAN, 2.0, 3.0, 15.0]])
    result = isolation_analysis(truth, errors, k=2)
    assert result["num_landmarks"] == 4 and result["num_instances"] == 4
    assert result["pearson_r"] == pytest.approx(1.0)
    assert result["attack_error"][1] is None and result["num_moved"] == [1, 0, 1, 1, 1]
    assert result["isolation"] == pytest.approx([1.5, 1.0, 1.0, 1.5, 7.5])
    assert pearson_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pearson_correlation([1, 1, 1], [1, 2, 3])) and math.isnan(pearson_correlation([1], [2]))


def test_eps_in_network_units_and_the_value_range():
    assert intensity_eps(8, "xray") == 8 / 128 == 0.0625  # (I - 128) / 128
    assert intensity_eps(4, "xray") == 8 / 256  # the authors' --epsilon 8 (divided by 256)
    assert intensity_eps(8, "mr") == intensity_eps(8, "ct", 3) == pytest.approx(16 / 255)
    assert intensity_eps(8, "default", 2) == 0.0625 and intensity_eps(8, None) == 8.0
    assert intensity_value_range("xray") == (-1.0, 1.0) and intensity_value_range("ct") is None
    x = torch.tensor([-1.0, 0.0, 0.0625])
    assert to_grey_levels(x, "xray").tolist() == [0.0, 128.0, 136.0]
    with pytest.raises(ValueError):
        intensity_eps(8, "percentile")


def test_protocol_attack_by_name_and_the_papers_box_in_array_order():
    objective = HeatmapAttackObjective(2.0)
    ti = protocol_attack("ti", objective, eps=0.0625, num_iterations=5, record_iterations=[1])
    ati = protocol_attack("ATI", objective, eps=0.0625, num_iterations=5)
    pgd = protocol_attack("pgd", objective, eps=0.0625)
    assert type(ti) is TargetedIFGSM and type(ati) is AdaptiveTargetedIFGSM and type(pgd) is PGD
    assert ti.step_size == 0.0625 * 0.05 and ti.record_iterations == (1,) and pgd.targeted and pgd.random_start
    with pytest.raises(ValueError):
        protocol_attack("fgsm", objective, eps=0.1)
    # x (axis 0) 100..600 of 640 columns, y (axis 1) 250..750 of 800 rows
    assert paper_target_box(2) == ((100 / 640, 250 / 800), (600 / 640, 750 / 800))
    assert paper_target_box(3) == ((0.25,) * 3, (0.75,) * 3)


def test_output_decoder_gives_voxel_coordinates_of_heatmap_and_voting_outputs():
    from transforms.heatmap.functional import gaussian_heatmaps
    from transforms.heatmap.offset_maps import offset_map_targets

    points = torch.tensor([[[5.0, 9.0], [12.0, 4.0]]], dtype=torch.float64)
    heat = gaussian_heatmaps(points.float(), (16, 16), 2.0, None)
    coords = LandmarkOutputDecoder("dark")(heat)
    assert coords.shape == (1, 2, 2) and coords.dtype == torch.float64
    torch.testing.assert_close(coords, points, atol=0.05, rtol=0)
    gauss, _, offsets = offset_map_targets(points[0].float(), (16, 16), 3.0)
    logits = torch.logit(gauss.clamp(1e-4, 1 - 1e-4))
    output = torch.cat([logits, offsets.flatten(0, 1)])[None]  # (1, N * (1 + D), H, W)
    voted = LandmarkOutputDecoder("voting_subpixel", radius=3.0)(output)
    torch.testing.assert_close(voted, points, atol=0.5, rtol=0)
    assert HeatmapOffsetAttackObjective(3.0).num_landmarks(output) == 2


def test_letters_targets_round_trip_and_map_to_the_network_grid(tmp_path):
    pts = letter_points("M", 19, (100.0, 200.0), (300.0, 400.0))
    assert pts.shape == (19, 2)
    assert pts[:, 0].min() == 100.0 and pts[:, 0].max() == 300.0 and pts[:, 1].max() == 400.0
    assert letter_points("MICA", 19).shape == (19, 2)
    with pytest.raises(ValueError):
        letter_points("M?", 19)
    pts[3] = NAN  # landmark 3 stays still
    path = write_target_points(tmp_path / "t.csv", pts, [f"l{i}" for i in range(19)])
    back = read_target_points(path, 19)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    assert np.isnan(back[3]).all()
    (tmp_path / "t.json").write_text('{"points": [[1, 2], null, [3, 4]]}', encoding="utf-8")
    assert np.isnan(read_target_points(tmp_path / "t.json")[1]).all()
    with pytest.raises(ValueError, match="3 target points for a model of 19"):
        read_target_points(tmp_path / "t.json", 19)
    # an image read at 0.5 mm/px, resampled to 2 mm/px: original pixel 8 is network voxel 2
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.zeros(1, 8, 8), affine=affine)
    image.meta["original_affine"] = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    net = original_pixels_to_network([[8.0, 4.0]], image)
    np.testing.assert_allclose(net, [[2.0, 1.0]])
    np.testing.assert_allclose(network_to_original_pixels(net, image), [[8.0, 4.0]])


def _report(targeted_mre: float, targeted_sdr: float, stationary_sdr: float, clean_stationary_sdr: float) -> dict:
    row0 = {
        "iteration": 0,
        "targeted_mre": 50.0,
        "targeted_medre": 50.0,
        "targeted_sdr": 0.0,
        "stationary_mre": 1.0,
        "stationary_medre": 1.0,
        "stationary_sdr": clean_stationary_sdr,
    }
    row = {**row0, "iteration": 20, "targeted_mre": targeted_mre, "targeted_sdr": targeted_sdr}
    row["stationary_sdr"] = stationary_sdr
    return {
        "radius": 4.0,
        "units": "mm",
        "ids": ["a", "b"],
        "clean": {"stationary_sdr": clean_stationary_sdr},
        "iterations": [row0, row],
        "isolation": {"pearson_r": 0.5},
    }


def test_bars_and_tables_of_ti_against_ati():
    good = {"ti": _report(10.0, 0.2, 0.95, 1.0), "ati": _report(6.0, 0.4, 0.9, 1.0)}
    bars = {b["bar"]: b["passed"] for b in attack_bars(good)}
    assert bars == {"ati_beats_ti": True, "stationary_kept_ti": True, "stationary_kept_ati": True}
    bad = {"ti": _report(6.0, 0.4, 0.95, 1.0), "ati": _report(6.0, 0.5, 0.85, 1.0)}  # equal MRE: not beaten
    bars = {b["bar"]: b["passed"] for b in attack_bars(bad)}
    assert bars == {"ati_beats_ti": False, "stationary_kept_ti": True, "stationary_kept_ati": False}
    results = {("scn_ceph", 8.0): good}
    rows = attack_rows(results)
    assert len(rows) == 4 and rows[1]["method"] == "ti" and rows[1]["iteration"] == 20
    assert rows[1]["clean_stationary_sdr"] == 1.0 and rows[1]["num_images"] == 2
    text = attack_markdown(results, {("scn_ceph", 8.0): attack_bars(good)})
    assert "| 20 | 10.00 | 6.00 |" in text and "PASS ati_beats_ti" in text and "### scn_ceph, eps 8/255" in text


def test_max_merged_sliding_windows_are_differentiable_for_attacks_and_match_the_plain_merge():
    from mlm.inferers import MaxSlidingWindowInferer

    torch.manual_seed(0)
    network = torch.nn.Conv3d(1, 2, 3, padding=1)
    inferer = MaxSlidingWindowInferer(roi_size=(4, 4, 8), step=(2, 2, 4))
    x = torch.rand(1, 1, 8, 8, 12, requires_grad=True)
    with torch.no_grad():
        plain = inferer(x.detach(), network)
    output = inferer(x, network)
    torch.testing.assert_close(output.detach(), plain)
    (grad,) = torch.autograd.grad(output.sum(), x)
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
