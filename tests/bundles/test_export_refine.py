"""Model-zoo export of the coarse-to-fine and robustness overlays (``mlm.bundle.export``, issues 13 and 14).

``scn_ceph`` trained for two iterations (``ceph_trained``) and its refinement stage trained for two iterations here
are exported as a two-stage bundle; its two-stage inference, run from the exported folder where this project is not
installed, gives the repository bundle's two-stage predictions, and its attack overlay runs there too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
import zoo_checks
from _bundle_runs import CEPH_TINY, check, clean_env, run_bundle
from test_export import (
    _run_source_bundle,
    overrides_of,
)
from test_refine_bundle import REFINE_INFER_TINY, TRAIN_TINY

from mlm.bundle.export import REFINE_CKPT_PATH, ExportError, export_bundle
from mlm.bundle.vendor import config_references, rewrite_config_references
from mlm.bundle.zoo_configs import conform_properties, merge_configs, overlay_difference

REPO = Path(__file__).resolve().parents[2]
#: largest difference of the predicted voxel coordinates between the exported and the repository bundle
VOXEL_TOLERANCE = 1e-4
STAGES = ["refine", "refine_inference", "train_sat", "train_amat", "attack", "robustness"]


# ---------------------------------------------------------------- config rules (no run)


def test_an_extended_list_is_written_as_an_addition():
    base = {"handlers": [{"_target_": "A"}], "train": {"handlers": [{"_target_": "B"}]}}
    full = {"handlers": [{"_target_": "A"}, {"_target_": "C"}], "train": {"handlers": [{"_target_": "D"}]}}
    diff = overlay_difference(base, full)
    assert diff == {"+handlers": [{"_target_": "C"}], "train#handlers": [{"_target_": "D"}]}
    assert merge_configs([base, diff]) == full


def test_a_wrapper_of_a_property_is_written_as_an_expression_that_the_property_check_skips():
    config = {
        "imports": ["$import mlm.bundle"],
        "preprocessing": {"_target_": "Compose", "transforms": []},
        "extra": [],
        "dataset": {
            "_target_": "Dataset",
            "data": [],
            "transform": {"_target_": "Compose", "transforms": "$@extra + [@preprocessing]", "map_items": True},
        },
    }
    conformed = conform_properties(config, "infer")
    expression = "$monai.transforms.Compose(transforms=(@extra + [@preprocessing]), map_items=True)"
    assert conformed["dataset"]["transform"] == expression
    assert conformed["preprocessing"] == config["preprocessing"]
    # a project package's name as a keyword argument is no reference to it
    assert rewrite_config_references(conformed)["dataset"]["transform"] == expression
    # an inline definition that does not use the property's item still cannot conform
    config["dataset"]["transform"] = {"_target_": "Compose", "transforms": "$@extra"}
    with pytest.raises(ValueError, match="property preprocessing"):
        conform_properties(config, "infer")


def test_a_handler_given_by_reference_moves_into_the_handler_list():
    config = {
        "amat": {"_target_": "H", "x": 1},
        "train": {"handlers": [{"_target_": "L", "load_dict": {"amat": "@amat"}}, "@amat"]},
    }
    conformed = conform_properties(config, "train")
    assert conformed["train"]["handlers"][1] == {"_target_": "H", "x": 1}
    assert conformed["amat"] == "@train#handlers#1"
    assert conformed["train"]["handlers"][0] == config["train"]["handlers"][0]


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def zoo_python(request) -> Path:
    """A Python with MONAI and the bundles' packages but not this project (``test_export.fresh_python``)."""
    return request.getfixturevalue("fresh_python")


@pytest.fixture(scope="module")
def refine_trained(ceph_data, tmp_path_factory) -> Path:
    """Two training iterations of the refinement stage (train.yaml + cpu.yaml + refine.yaml, tiny geometry)."""
    root = tmp_path_factory.mktemp("refine_run")
    args = ["--dataset_dir", str(ceph_data), "--bundle_root", str(root), *TRAIN_TINY]
    check(run_bundle("scn_ceph", ["train.yaml", "cpu.yaml", "refine.yaml"], [*args, "--num_iterations", "2"]))
    return root / "models" / "refine" / "model.pt"


@pytest.fixture(scope="module")
def two_stage(ceph_data, ceph_trained, refine_trained, tmp_path_factory) -> SimpleNamespace:
    """The repository bundle's two-stage and global-stage predictions of two images, and the two-stage export."""
    root = tmp_path_factory.mktemp("export_two_stage")
    tiny, checkpoint = overrides_of(CEPH_TINY), ceph_trained / "models" / "model.pt"
    reference = {**tiny, **overrides_of(REFINE_INFER_TINY), "dataset_dir": str(ceph_data)}
    reference.update(ckpt_path=str(checkpoint), refine_ckpt_path=str(refine_trained))
    reference.update(output_dir=str(root / "reference"), infer_split="training", max_items=2)
    _run_source_bundle("scn_ceph", ["inference.yaml", "cpu.yaml", "refine_inference.yaml"], reference)
    alone = {k: v for k, v in reference.items() if not k.startswith("refine_")}
    _run_source_bundle("scn_ceph", ["inference.yaml", "cpu.yaml"], {**alone, "output_dir": str(root / "global")})
    result = export_bundle(
        "scn_ceph",
        checkpoint,
        root / "scn_ceph",
        configs=["cpu.yaml"],
        overrides=tiny,
        url="https://example.org/scn_ceph/model.pt",
        refine_checkpoint=refine_trained,
        refine_overrides=overrides_of(TRAIN_TINY),
        refine_url="https://example.org/scn_ceph/refine.pt",
    )
    return SimpleNamespace(path=result.path, result=result, data=ceph_data, root=root, refine=refine_trained)


def _run_exported(python: Path, bundle: Path, configs: list[str], args: list[str]) -> subprocess.CompletedProcess:
    files = "[" + ",".join(f"'configs/{c}.yaml'" for c in configs) + "]"
    cmd = [str(python), "-m", "monai.bundle", "run", "--config_file", files, *args]
    result = subprocess.run(
        cmd, cwd=bundle, env=clean_env(), capture_output=True, text=True, timeout=300, encoding="utf-8"
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _voxels(path: Path) -> torch.Tensor:
    data = json.loads(path.read_text(encoding="utf-8"))
    return torch.tensor([[float("nan")] * 2 if p is None else p for p in data["voxel_points"]], dtype=torch.float64)


@pytest.mark.slow
def test_exported_two_stage_inference_equals_the_repository_bundle(two_stage, zoo_python):
    out = two_stage.root / "exported"
    args = ["--dataset_dir", str(two_stage.data), "--output_dir", str(out), "--infer_split", "training"]
    result = _run_exported(zoo_python, two_stage.path, ["inference", "refine_inference"], [*args, "--max_items", "2"])
    assert "models/refine.pt" in result.stdout + result.stderr  # the refinement's weights of the bundle
    ours = sorted((two_stage.root / "reference" / "predictions").glob("*_landmarks.json"))
    theirs = sorted((out / "predictions").glob("*_landmarks.json"))
    assert len(ours) == 2 and [p.name for p in theirs] == [p.name for p in ours]
    for a, b in zip(ours, theirs):
        assert torch.isfinite(_voxels(a)).any()
        torch.testing.assert_close(_voxels(b), _voxels(a), atol=VOXEL_TOLERANCE, rtol=0, equal_nan=True)
        # the refinement moved the global stage's landmarks (by pixels: a comparison of the refined ones)
        moved = (_voxels(b) - _voxels(two_stage.root / "global" / "predictions" / a.name)).abs()
        assert (moved[torch.isfinite(moved)] > 1e-3).any()


@pytest.mark.slow
def test_two_stage_export_carries_both_networks_and_every_overlay(two_stage, zoo_python):
    path = two_stage.path
    assert two_stage.result.configs == ["train", "inference", "evaluate", "multi_gpu_train", *STAGES]
    assert sorted(p.stem for p in (path / "configs").glob("*.yaml")) == sorted(two_stage.result.configs)
    # the refinement's weights: the training checkpoint's network, listed with its own URL
    state = torch.load(path / "models" / "refine.pt", weights_only=True)
    trained = torch.load(two_stage.refine, weights_only=True)["model"]
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in state)
    large = yaml.safe_load((path / "large_files.yml").read_text(encoding="utf-8"))["large_files"]
    assert [(f["path"], f["url"]) for f in large] == [
        ("models/model.pt", "https://example.org/scn_ceph/model.pt"),
        ("models/refine.pt", "https://example.org/scn_ceph/refine.pt"),
    ]
    # the exported overlays: the bundle's weights and the trained refinement geometry, only the copied code
    refine = yaml.safe_load((path / "configs" / "refine_inference.yaml").read_text(encoding="utf-8"))
    assert refine["refine_ckpt_path"] == REFINE_CKPT_PATH
    assert refine["refine_patch_size"] == [16, 16] and refine["refine_spacing"] == 2.0
    assert refine["refine_network_def"]["num_filters"] == 4
    for name in two_stage.result.configs:
        text = (path / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
        assert config_references(yaml.safe_load(text)) == set() and "../../" not in text, name
    for module in (
        "mlm/refine.py",
        "mlm/attacks/__init__.py",
        "mlm/adversarial_training/__init__.py",
        "mlm/bundle/attack.py",
    ):
        assert (path / "scripts" / module).is_file(), module
    assert (path / "scripts" / "transforms" / "patches").is_dir()
    meta = json.loads((path / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert "Two-stage" in meta["description"] and "configs/refine_inference.yaml" in meta["description"]
    readme = (path / "docs" / "README.md").read_text(encoding="utf-8")
    assert "\"['configs/inference.yaml','configs/refine_inference.yaml']\"" in readme
    assert "\"['configs/inference.yaml','configs/evaluate.yaml','configs/attack.yaml']\"" in readme
    # MONAI's property check of every overlay on top of the configs it overlays, without this project
    probe = f"import sys; sys.path[:0] = [{str(Path(zoo_checks.__file__).parent)!r}, {str(path)!r}]; import zoo_checks"
    probe += f"; from pathlib import Path; print(zoo_checks.check_overlays(Path({str(path)!r}), "
    probe += f"{{'dataset_dir': {str(two_stage.data)!r}, 'output_dir': {str(two_stage.root / 'props')!r}}}))"
    result = subprocess.run(
        [str(zoo_python), "-c", probe],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        encoding="utf-8",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == repr(STAGES)


@pytest.mark.slow
def test_exported_attack_overlay_runs_from_the_exported_folder(two_stage, zoo_python):
    out = two_stage.root / "attack"
    args = ["--dataset_dir", str(two_stage.data), "--output_dir", str(out), "--max_items", "1"]
    args += ["--attack_iterations", "2", "--num_overlays", "0"]
    result = _run_exported(zoo_python, two_stage.path, ["inference", "evaluate", "attack"], args)
    assert "attack ATI: 1 images" in result.stdout + result.stderr
    report = json.loads((out / "attack_metrics.json").read_text(encoding="utf-8"))
    assert [row["iteration"] for row in report["iterations"]] == [0, 1]
    assert report["settings"]["num_iterations"] == 2 and (out / "metrics.json").is_file()


@pytest.mark.slow
def test_export_refuses_a_refine_checkpoint_that_does_not_fit(ceph_trained, refine_trained, tmp_path):
    tiny, checkpoint, out = overrides_of(CEPH_TINY), ceph_trained / "models" / "model.pt", tmp_path / "zoo"
    refine = overrides_of(TRAIN_TINY)

    def export(refine_checkpoint: Path, refine_overrides: dict) -> None:
        export_bundle(
            "scn_ceph", checkpoint, out, ["cpu.yaml"], tiny, refine_checkpoint=refine_checkpoint,
            refine_overrides=refine_overrides,
        )  # fmt: skip

    with pytest.raises(
        ExportError, match=f"refine checkpoint {checkpoint} does not fit the exported refine_network_def"
    ):
        export(checkpoint, refine)  # the global stage's weights
    with pytest.raises(ExportError, match=f"refine checkpoint {refine_trained} does not fit .* refine_network_def"):
        export(refine_trained, {})  # the refinement trained with 4 filters, the configs' 32
    geometry = {k: v for k, v in refine.items() if k != "refine_spacing"}
    with pytest.raises(
        ExportError,
        match=f"refine checkpoint {refine_trained} does not fit the exported configs: .*pixdim.*refine_spacing",
    ):
        export(refine_trained, geometry)  # 2 mm patches, the configs' 0.25 mm
    with pytest.raises(ExportError, match="refine checkpoint .* not found"):
        export(tmp_path / "missing.pt", refine)
    assert not out.exists()


@pytest.mark.slow
def test_export_takes_a_plain_refine_state_dict(ceph_trained, refine_trained, tmp_path):
    """``weights/refine.pt`` of ``scripts/train_real.py``: the network's state dict alone (no geometry recorded)."""
    plain = torch.load(refine_trained, weights_only=True)["model"]
    torch.save(plain, tmp_path / "refine.pt")
    result = export_bundle(
        "scn_ceph", ceph_trained / "models" / "model.pt", tmp_path / "zoo", ["cpu.yaml"], overrides_of(CEPH_TINY),
        refine_checkpoint=tmp_path / "refine.pt", refine_overrides=overrides_of(TRAIN_TINY),
    )  # fmt: skip
    state = torch.load(result.path / "models" / "refine.pt", weights_only=True)
    assert state.keys() == plain.keys() and all(torch.equal(state[k], plain[k]) for k in state)
    assert "no URL for models/refine.pt: large_files.yml has an empty url to fill in." in result.warnings


def test_export_script_passes_the_refinement_options(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("export_bundle_script", REPO / "scripts" / "export_bundle.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise ExportError("stop")

    monkeypatch.setattr(script, "export_bundle", fake)
    argv = ["scn_ceph", "--checkpoint", "g.pt", "--out", str(tmp_path), "--refine-checkpoint", "r.pt"]
    argv += ["--refine-set", "refine_spacing=2.0", "--refine-set", "network_def#num_filters=4", "--refine-url", "u"]
    with pytest.raises(ExportError, match="stop"):
        script.main(argv)
    assert seen["refine_checkpoint"] == Path("r.pt") and seen["refine_url"] == "u"
    assert seen["refine_overrides"] == {"refine_spacing": 2.0, "network_def#num_filters": 4}
