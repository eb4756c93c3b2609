"""Model-zoo export (``mlm.bundle.export``, ``scripts/export_bundle.py``).

The end-to-end tests export the bundles trained for a few iterations (conftest.py; :data:`CASES`, among them one
domain of ``gu2net_universal``: a single-domain GU2Net and the universal model's hand domain), then run the exported
bundle in a virtual environment that has MONAI and the bundle's packages but not this project, and pass it through
the model zoo's own checks (``zoo_checks.py``, reimplemented from the zoo's ``ci/``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch
import yaml
import zoo_checks
from _bundle_runs import (
    BUNDLES,
    CEPH_TINY,
    FARNET_TINY,
    GU2NET_TINY,
    HAND_MRI_TINY,
    HAND_XRAY_TINY,
    MTUNET_TINY,
    SPINE_TINY,
    clean_env,
    gu2net_domains,
)

from mlm.bundle.export import DEFAULT_DATASET_DIR, ExportError, export_bundle, network_state_dict
from mlm.bundle.vendor import (
    VendoringError,
    config_references,
    module_closure,
    rewrite_config_references,
    vendor_modules,
)
from mlm.bundle.zoo_configs import (
    conform_properties,
    get_id,
    merge_configs,
    overlay_difference,
    prune_unreferenced,
    unvalidated_tail,
)
from mlm.bundle.zoo_domains import DOMAIN_ITEMS, domain_selection, domain_state_dict, freeze_domain
from mlm.bundle.zoo_metadata import MetadataError, eval_metrics_from_report, required_packages, validate_metadata

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_SCHEMA = REPO.parent / "shared" / "zoo" / "meta_schema_20240725.json"
ALL_BUNDLES = (
    "scn_ceph",
    "scn_spine_ct",
    "scn_hand_xray",
    "scn_hand_mri",
    "mtunet_ceph",
    "farnet_ceph",
    "gu2net_universal",
)


class Case(NamedTuple):
    """An end-to-end export: the repository bundle, its phantom fixture, its trained-run fixture, the overrides of
    the run (tiny geometry) and the overlays of the export and of the source bundle's runs (those of the training;
    for a universal model's domain ``domain.yaml`` with ``--universal true``)."""

    bundle: str
    data: str
    run: str
    tiny: list[str]
    configs: tuple[str, ...] = ("cpu.yaml",)


#: the domain of gu2net_universal's universal model that the export predicts (not domain 0: its weights are moved)
UNIVERSAL_DOMAIN, UNIVERSAL_INDEX = "hand", 1
#: case -> export (the bundle's name for one export per bundle)
CASES = {
    "scn_ceph": Case("scn_ceph", "ceph_data", "ceph_trained", CEPH_TINY),
    "scn_spine_ct": Case("scn_spine_ct", "spine_data", "spine_trained", [*SPINE_TINY, "--sigma", "1.0"]),
    "scn_hand_xray": Case("scn_hand_xray", "hand_xray_data", "hand_xray_trained", HAND_XRAY_TINY),
    "scn_hand_mri": Case("scn_hand_mri", "hand_mri_data", "hand_mri_trained", [*HAND_MRI_TINY, "--sigma", "1.0"]),
    "mtunet_ceph": Case("mtunet_ceph", "ceph_data", "mtunet_trained", MTUNET_TINY),
    "farnet_ceph": Case("farnet_ceph", "ceph_data", "farnet_trained", FARNET_TINY),
    # a single-domain GU2Net (domain.yaml, the head domain) and one domain of the universal model
    "gu2net_head": Case(
        "gu2net_universal",
        "ceph_data",
        "gu2net_head_trained",
        ["--domain", "head", "--patch_size", "[32,32]", *GU2NET_TINY],
        ("cpu.yaml", "domain.yaml"),
    ),
    "gu2net_universal_hand": Case(
        "gu2net_universal",
        "hand_xray_data",
        "gu2net_universal_trained",
        [*gu2net_domains(), *GU2NET_TINY, "--domain", UNIVERSAL_DOMAIN, "--universal", "true"],
        ("cpu.yaml", "domain.yaml"),
    ),
}
#: largest difference of predicted coordinates (mm) between the exported and the source bundle
POINT_TOLERANCE_MM = 1e-6


def overrides_of(args: list[str]) -> dict:
    """``["--num_filters", "4", ...]`` (a bundle command line's overrides) as ``{"num_filters": 4, ...}``."""
    return {args[i][2:]: yaml.safe_load(args[i + 1]) for i in range(0, len(args), 2)}


def official_schema() -> Path:
    if not OFFICIAL_SCHEMA.is_file():
        pytest.skip(f"the official model-zoo schema copy is not at {OFFICIAL_SCHEMA}")
    return OFFICIAL_SCHEMA


# ---------------------------------------------------------------- metadata and schema


def test_shipped_schema_is_the_official_model_zoo_schema():
    shipped = json.loads((REPO / "mlm" / "bundle" / "metadata_schema.json").read_text(encoding="utf-8"))
    assert shipped == json.loads(official_schema().read_text(encoding="utf-8"))


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
def test_bundle_metadata_passes_the_official_schema_and_names_no_project_package(bundle):
    meta = json.loads((BUNDLES / bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    validate_metadata(meta, official_schema())
    assert meta["version"] in meta["changelog"]
    assert "monai-landmarks" not in meta["required_packages_version"]
    assert all(isinstance(v, (int, float)) for v in meta.get("eval_metrics", {}).values())
    # what the issue found: an output range of nulls is rejected by the official schema
    broken = json.loads(json.dumps(meta))
    next(iter(broken["network_data_format"]["outputs"].values()))["value_range"] = [None, None]
    with pytest.raises(MetadataError, match="value_range"):
        validate_metadata(broken, official_schema())


def test_eval_metrics_are_the_numbers_of_the_report():
    report = {
        "units": "mm",
        "count": 38,
        "num_images": 2,
        "pe_mean": 1.5,
        "pe_std": 0.5,
        "pe_median": 1.25,
        "pe_max": float("nan"),
        "sdr": {"2": 0.75, "2.5": None, "4": 1.0},
        "identification_rate": 0.9,
        "identification_max_dist_mm": 20.0,
        "normalized": {"pe_mean": 3.0, "pe_median": 2.0},
    }
    assert eval_metrics_from_report(report) == {
        "mean_point_error_mm": 1.5,
        "point_error_std_mm": 0.5,
        "median_point_error_mm": 1.25,
        "sdr_2mm": 0.75,
        "sdr_4mm": 1.0,
        "identification_rate_20mm": 0.9,
        "mean_point_error_normalized_mm": 3.0,
        "median_point_error_normalized_mm": 2.0,
        "num_images": 2,
        "num_landmarks_evaluated": 38,
    }
    with pytest.raises(MetadataError, match="pe_mean"):
        eval_metrics_from_report({"units": "mm", "pe_mean": None})


def test_required_packages_drop_the_project_and_name_what_the_code_imports():
    listed = {"monai-landmarks": "0.1.0", "Pytorch_Ignite": "0.5.5", "pillow": "12.3.0"}
    kept = required_packages(listed, {"ignite": ["mlm.engines"], "PIL": ["mlm.data.image_header"], "torch": ["x"]})
    assert kept == {"Pytorch_Ignite": "0.5.5", "pillow": "12.3.0"}
    with pytest.raises(MetadataError, match=r"nibabel \(imported by mlm.prediction\)"):
        required_packages(listed, {"nibabel": ["mlm.prediction"]})
    with pytest.raises(MetadataError, match="valid version"):
        required_packages({"pillow": "latest"}, {"PIL": ["m"]})


def test_required_packages_of_every_bundle_install_on_python_3_10(tmp_path):
    """What the zoo's CI pip-installs for each bundle (``get_bundle_requirements.py``) exists for CPython 3.10."""
    reqs = sorted({r for b in ALL_BUNDLES for r in zoo_checks.requirements(BUNDLES / b)})
    assert not any(r.lower().startswith("monai-landmarks") for r in reqs)
    (tmp_path / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet"]
    cmd += ["--retries", "0", "--timeout", "20"]
    cmd += ["--python-version", "3.10", "--only-binary=:all:", "--target", str(tmp_path / "t")]
    cmd += ["-r", str(tmp_path / "requirements.txt"), "--report", str(tmp_path / "report.json")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, encoding="utf-8")
    if result.returncode != 0 and re.search(
        r"NewConnectionError|Temporary failure|Network is unreachable", result.stderr
    ):
        pytest.skip("the package index cannot be reached")
    assert result.returncode == 0, result.stderr[-3000:]
    found = {
        (i["metadata"]["name"].lower(), i["metadata"]["version"])
        for i in json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["install"]
    }
    assert found == {(n.lower(), v) for n, v in (r.split("==") for r in reqs)}


# ---------------------------------------------------------------- configs


def test_overlay_difference_merged_after_its_base_gives_the_full_config():
    base = {
        "device": "cpu",
        "network_def": {"_target_": "A", "depth": 3, "width": 8},
        "train": {"dataloader": {"batch_size": 1, "shuffle": True}, "handlers": [{"_target_": "H"}]},
        "run": ["$@train#trainer.run()"],
    }
    full = {
        "device": "$dev()",
        "network_def": {"_target_": "B", "width": 8},  # another component: replaced whole
        "train": {"dataloader": {"batch_size": 1, "shuffle": False, "sampler": "@s"}, "handlers": []},
        "run": ["$@train#trainer.run()"],
        "s": {"_target_": "S"},
    }
    diff = overlay_difference(base, full)
    assert diff == {
        "device": "$dev()",
        "network_def": {"_target_": "B", "width": 8},
        "train#dataloader#shuffle": False,
        "train#dataloader#sampler": "@s",
        "train#handlers": [],
        "s": {"_target_": "S"},
    }
    assert merge_configs([base, diff]) == full


def test_prune_keeps_base_keys_and_what_they_refer_to():
    config = {"net": "$f(@lr_used)", "lr_used": 1, "lr_unused": 2, "optimizer": {"p": "@loss"}, "run": ["$@net"]}
    assert set(prune_unreferenced(config, keep=["net"])) == {"net", "lr_used", "run"}


def _ceph_train(**overrides):
    cfg = BUNDLES / "scn_ceph" / "configs"
    return merge_configs([cfg / "train.yaml", cfg / "cpu.yaml"], overrides, root=cfg.parent)


def _optional_ids_ok(config: dict, tmp_path: Path) -> dict:
    """MONAI's check of the optional property IDs (what ``check_properties`` adds to the required ones)."""
    from monai.bundle import ConfigWorkflow
    from monai.bundle.properties import TrainProperties

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    meta = BUNDLES / "scn_ceph" / "configs" / "metadata.json"
    workflow = ConfigWorkflow(config_file=str(path), meta_file=str(meta), logging_file=False, workflow_type="train")
    workflow.parser.parse(reset=True)  # as initialize() does, without running the config's initialize expressions
    out = {}
    for name, prop in TrainProperties.items():
        try:
            out[name] = workflow._check_optional_id(name=name, property=prop)
        except AttributeError:  # MONAI calls str methods on what the item holds: a number or a dict crashes it
            out[name] = False
    return out


def test_conformed_train_config_passes_monai_optional_property_ids(tmp_path):
    conformed = conform_properties(_ceph_train(), "train")
    assert all(_optional_ids_ok(conformed, tmp_path).values())
    validation = [h for h in conformed["train"]["handlers"] if h["_target_"] == "ValidationHandler"]
    assert validation == [
        {
            "_target_": "ValidationHandler",
            "validator": "@validate#evaluator",
            "epoch_level": False,
            "interval": "@val_interval",
        }
    ]
    assert get_id(conformed, "validate#evaluator#key_val_metric") == "@validate#key_metric"
    assert "val_mre" in get_id(conformed, "validate#key_metric")
    assert get_id(conformed, "validate#evaluator#inferer") == "@validate#inferer"
    # an inline metric (what the source configs have) fails MONAI's check; conforming it again fixes it
    broken = json.loads(json.dumps(conformed))
    broken["validate"]["evaluator"]["key_val_metric"] = broken["validate"].pop("key_metric")
    assert not _optional_ids_ok(broken, tmp_path)["val_key_metric"]
    assert all(_optional_ids_ok(conform_properties(broken, "train"), tmp_path).values())


def test_iteration_level_validation_reports_an_unvalidated_tail():
    conformed = conform_properties(_ceph_train(num_iterations=250, val_interval=100), "train")
    assert unvalidated_tail(conformed) == 50
    assert unvalidated_tail(conform_properties(_ceph_train(), "train")) == 0  # cpu.yaml: 1000 / 100


def test_config_references_are_found_and_rewritten_to_the_vendored_copy():
    config = {
        "imports": ["$import torch", "$import mlm", "$import mlm.bundle"],
        "net": {"_target_": "mlm.networks.SpatialConfigurationNet"},
        "aug": {"_target_": "transforms.presets.scn_train_augmentation"},
        "opt": "$mlm.bundle.parameter_groups(@net, @train#deterministic_transforms)",
        "pre": {"_target_": "Compose", "transforms": "$@x#transforms + monai.transforms.Identity()"},
    }
    assert config_references(config) == {
        "mlm",
        "mlm.bundle",
        "mlm.networks.SpatialConfigurationNet",
        "transforms.presets.scn_train_augmentation",
        "mlm.bundle.parameter_groups",
    }
    out = rewrite_config_references(config)
    assert out["imports"] == [
        "$import torch",
        "$import scripts",
        "$import scripts.mlm",
        "$import scripts.mlm.bundle",
    ]
    assert out["net"]["_target_"] == "scripts.mlm.networks.SpatialConfigurationNet"
    assert out["aug"]["_target_"] == "scripts.transforms.presets.scn_train_augmentation"
    assert out["opt"] == "$scripts.mlm.bundle.parameter_groups(@net, @train#deterministic_transforms)"
    assert out["pre"] == config["pre"]
    assert config_references(out) == set()


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_vendored_code_follows_imports_and_imports_nothing_from_the_original(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _write(
        src,
        {
            "pkga/__init__.py": "from pkga.core import f\n",
            "pkga/core.py": "import json\nfrom pathlib import Path\n\nfrom pkgb.util import g\n\n\n"
            "def f():\n    from pkga.lazy import h\n\n"
            "    return g() + h() + json.loads((Path(__file__).parent / 'table.json').read_text())['x']\n",
            "pkga/lazy.py": "import pkgb.util as u\n\n\ndef h():\n    return 10 * u.g()\n",
            "pkga/table.json": '{"x": 100}',
            "pkga/unused.py": "import nothing_here\n",
            "pkgb/__init__.py": "",
            "pkgb/util.py": "from monai.utils import optional_import\n\nnib, _ = optional_import('nibabel')\n\n\n"
            "def g():\n    return 1\n",
        },
    )
    dirs = {"pkga": src / "pkga", "pkgb": src / "pkgb"}
    modules, third = module_closure(["pkga.f"], dirs)
    assert modules == ["pkga", "pkga.core", "pkga.lazy", "pkgb", "pkgb.util"]
    assert third == {"monai": ["pkgb.util"], "nibabel": ["pkgb.util"]}
    code = vendor_modules(modules, tmp_path / "out" / "vendored_pkg", dirs)
    assert "pkga/table.json" in code.files and not (tmp_path / "out" / "vendored_pkg" / "pkga" / "unused.py").exists()
    text = (tmp_path / "out" / "vendored_pkg" / "pkga" / "core.py").read_text(encoding="utf-8")
    assert "from ..pkgb.util import g" in text and "from .lazy import h" in text
    monkeypatch.syspath_prepend(str(tmp_path / "out"))
    vendored = importlib.import_module("vendored_pkg.pkga")
    try:
        assert vendored.f() == 111
        assert "pkga" not in sys.modules and "pkgb" not in sys.modules
    finally:
        for name in [m for m in sys.modules if m.startswith("vendored_pkg")]:
            del sys.modules[name]
    # `import pkga.core` binds the package name, which the copy cannot reproduce
    _write(src, {"pkga/lazy.py": "import pkgb.util\n"})
    with pytest.raises(VendoringError, match="binds the project's package name"):
        vendor_modules(modules, tmp_path / "out2", dirs)


def _gu2net_configs(*overlays: str, base: tuple[str, ...] = ("inference.yaml", "evaluate.yaml"), **overrides) -> dict:
    cfg = BUNDLES / "gu2net_universal" / "configs"
    return merge_configs([cfg / c for c in [*base, *overlays]], overrides, root=cfg.parent)


def test_one_domain_of_gu2net_universal_is_written_as_plain_values():
    """domain.yaml's items (what depends on the domain selected) become the domain's values: a single-domain
    config without domains.yaml, whichever model (universal or not) the selection names."""
    config = _gu2net_configs("cpu.yaml", "domain.yaml", domain="hand", universal=True)
    selection = domain_selection(config)
    assert (selection.name, selection.index, selection.universal) == ("hand", 1, True)
    assert len(selection.facts["landmark_names"]) == 37
    frozen = freeze_domain(config)
    kept = prune_unreferenced(frozen, keep=["network_def", "evaluator", "geometry_domain", "radii"])
    assert not DOMAIN_ITEMS & set(kept)
    assert (frozen["pixdim"], frozen["patch_size"], frozen["resize_mode"]) == (-1.0, [192, 256], "fit")
    assert (frozen["radii"], frozen["normalize_pair"]) == ([2.0, 4.0, 10.0], [1, 5])  # the hand's evaluation
    assert frozen["num_landmarks"]["default_names"] == selection.facts["landmark_names"]
    assert frozen["geometry_domain"] is None and frozen["universal"] is False
    assert (frozen["network_def"]["domain"], frozen["network_def"]["domain_landmarks"]) == (0, None)
    assert domain_selection(_gu2net_configs("cpu.yaml")) is None  # facts.yaml's head domain: nothing to select
    with pytest.raises(ValueError, match="universal.yaml trains one model on every domain"):
        domain_selection(_gu2net_configs("cpu.yaml", "universal.yaml", base=("train.yaml",)))


def test_a_universal_models_domain_weights_make_a_single_domain_network():
    from mlm.networks.gu2net import GU2Net

    torch.manual_seed(0)
    universal, single = GU2Net(2, 1, [3, 5, 2], num_filters=4).eval(), GU2Net(2, 1, [5], num_filters=4).eval()
    with torch.no_grad():  # per-domain norms that differ between the domains
        for name, buffer in universal.named_buffers():
            if "running" in name:
                buffer.uniform_(0.5, 1.5)
    single.load_state_dict(domain_state_dict(universal, 1), strict=True)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(single(x), universal(x, domain=1))
        assert not torch.equal(single(x)[:, :3], universal(x, domain=0))
    with pytest.raises(ValueError, match="3 domains, domain 3"):
        domain_state_dict(universal, 3)


def test_network_state_dict_of_a_training_checkpoint_or_a_plain_one():
    w = {"conv.weight": torch.ones(1)}
    assert network_state_dict({"model": w, "optimizer": {"state": {}}}) == w
    assert network_state_dict(w) == w
    assert network_state_dict({"module.conv.weight": torch.ones(1)}) == w
    with pytest.raises(ExportError, match="no 'model' entry"):
        network_state_dict({"optimizer": {"state": {}}})


# ---------------------------------------------------------------- end to end


def _run_source_bundle(bundle: str, configs: list[str], overrides: dict) -> None:
    """Run one of the repository's bundles in this process (one thread, as the exported run in its process)."""
    from monai.bundle import ConfigWorkflow

    folder = BUNDLES / bundle
    threads, cwd = torch.get_num_threads(), os.getcwd()
    torch.set_num_threads(1)
    os.chdir(folder)  # as the README's commands run: the bundle's config macros are relative to its folder
    try:
        workflow = ConfigWorkflow(
            config_file=[str(folder / "configs" / c) for c in configs],
            logging_file=False,
            workflow_type="infer",
            bundle_root=str(folder),
            **overrides,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory) -> SimpleNamespace:
    """A bundle trained for a few iterations, evaluated, run for reference predictions and exported."""
    case = CASES[request.param]
    bundle, configs = case.bundle, list(case.configs)
    data, run = request.getfixturevalue(case.data), request.getfixturevalue(case.run)
    tiny = overrides_of(case.tiny)
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    checkpoint = run / "models" / "model.pt"
    common = {**tiny, "dataset_dir": str(data), "ckpt_path": str(checkpoint)}
    _run_source_bundle(
        bundle, ["inference.yaml", "evaluate.yaml", *configs], {**common, "output_dir": str(root / "eval")}
    )
    reference = {**common, "output_dir": str(root / "reference"), "infer_split": "training", "max_items": 2}
    _run_source_bundle(bundle, ["inference.yaml", *configs], reference)
    result = export_bundle(
        bundle,
        checkpoint,
        root / bundle,
        configs=configs,
        overrides=tiny,
        eval_report=root / "eval" / "metrics.json",
        url=f"https://example.org/{bundle}/model.pt",
    )
    return SimpleNamespace(
        bundle=bundle, case=case, path=result.path, result=result, data=data, checkpoint=checkpoint, root=root
    )


def _points(prediction: dict) -> torch.Tensor:
    """The predicted points, NaN for a missing one (the first one may be: a tiny model predicts in the padding)."""
    dims = max((len(p) for p in prediction["points"] if p is not None), default=3)
    return torch.tensor([[math.nan] * dims if p is None else p for p in prediction["points"]], dtype=torch.float64)


@pytest.mark.slow
def test_exported_inference_runs_without_the_project_and_equals_the_source_bundle(exported, fresh_python):
    out = exported.root / "exported_inference"
    cmd = [str(fresh_python), "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml"]
    cmd += [
        "--dataset_dir",
        str(exported.data),
        "--output_dir",
        str(out),
        "--infer_split",
        "training",
        "--max_items",
        "2",
    ]
    result = subprocess.run(
        cmd, cwd=exported.path, env=clean_env(), capture_output=True, text=True, timeout=300, encoding="utf-8"
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ours = sorted((exported.root / "reference" / "predictions").glob("*_landmarks.json"))
    theirs = sorted((out / "predictions").glob("*_landmarks.json"))
    assert len(ours) == 2 and [p.name for p in theirs] == [p.name for p in ours]
    for a_path, b_path in zip(ours, theirs):
        a, b = json.loads(a_path.read_text(encoding="utf-8")), json.loads(b_path.read_text(encoding="utf-8"))
        assert {k: v for k, v in a.items() if k not in ("points", "voxel_points", "values")} == {
            k: v for k, v in b.items() if k not in ("points", "voxel_points", "values")
        }
        torch.testing.assert_close(_points(b), _points(a), atol=POINT_TOLERANCE_MM, rtol=0, equal_nan=True)
        values = [torch.tensor([math.nan if v is None else v for v in p["values"]]) for p in (a, b)]
        torch.testing.assert_close(values[1], values[0], atol=1e-6, rtol=1e-6, equal_nan=True)
        assert torch.isfinite(_points(a)).any()


@pytest.mark.slow
def test_exported_bundle_passes_the_model_zoo_checks(exported, fresh_python):
    cmd = [str(fresh_python), str(Path(zoo_checks.__file__)), str(exported.path)]
    cmd += [
        "--schema",
        str(official_schema()),
        "--dataset-dir",
        str(exported.data),
        "--work",
        str(exported.root / "zoo"),
    ]
    result = subprocess.run(
        cmd, cwd=exported.root, env=clean_env(), capture_output=True, text=True, timeout=300, encoding="utf-8"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    done = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("ZOO_CHECKS "))[11:])
    assert done["large_files"] == ["models/model.pt"] and done["directory"] and done["metadata"]
    assert done["data_shape"] and done["torchscript_max_abs_diff"] <= 1e-5
    assert done["train_workflow"] and done["infer_workflow"] and done["evaluate_workflow"]
    assert done["multi_gpu_train_properties"]
    assert done["overlay_properties"] == ["refine", "train_sat", "train_amat", "attack", "robustness"]
    assert not any("monai-landmarks" in r for r in done["requirements"])


@pytest.mark.slow
def test_exported_bundle_is_self_contained(exported):
    path = exported.path
    # weights: the training checkpoint's network entry, as a plain state dict
    state = torch.load(path / "models" / "model.pt", weights_only=True)
    trained = torch.load(exported.checkpoint, weights_only=True)["model"]
    if "--universal" in exported.case.tiny:
        # a universal model's domain: the shared layers and the domain's own, moved to index 0 of the per-domain lists
        for key, value in state.items():
            moved = [key[: m.start()] + f".{UNIVERSAL_INDEX}." + key[m.end() :] for m in re.finditer(r"\.0\.", key)]
            assert any(k in trained and torch.equal(trained[k], value) for k in [key, *moved]), key
        assert len(state) < len(trained)
    else:
        assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in state)
    # the bundle's overlays as overlays of the exported configs; one stage without refine_checkpoint
    stages = ["refine", "train_sat", "train_amat", "attack", "robustness"]
    assert exported.result.configs == ["train", "inference", "evaluate", "multi_gpu_train", *stages]
    assert not (path / "models" / "refine.pt").exists() and not (path / "configs" / "refine_inference.yaml").exists()
    # configs name the vendored code only, and no folder of this repository (nor gu2net_universal's domains)
    for name in exported.result.configs:
        text = (path / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
        assert config_references(yaml.safe_load(text)) == set() and "../../" not in text
        assert not DOMAIN_ITEMS & {re.split(r"::|#", k.lstrip("+"))[0] for k in yaml.safe_load(text)}
    assert (
        yaml.safe_load((path / "configs" / "inference.yaml").read_text(encoding="utf-8"))["dataset_dir"]
        == DEFAULT_DATASET_DIR
    )
    for source in (path / "scripts").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(mlm|transforms)\b", source.read_text(encoding="utf-8"), re.M), (
            source
        )
    # metadata: the evaluation report's numbers
    meta = json.loads((path / "configs" / "metadata.json").read_text(encoding="utf-8"))
    if exported.bundle == "gu2net_universal":  # the exported domain's heatmaps, one per landmark
        output = next(iter(meta["network_data_format"]["outputs"].values()))
        reference = next((exported.root / "reference" / "predictions").glob("*_landmarks.json"))
        names = json.loads(reference.read_text(encoding="utf-8"))["names"]
        assert output["num_channels"] == len(names) and output["channel_def"]["0"] == f"{names[0]} heatmap"
    report = json.loads((exported.root / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert meta["eval_metrics"]["mean_point_error_mm"] == report["pe_mean"]
    assert meta["eval_metrics"] == eval_metrics_from_report(report)
    # large_files.yml: the URL given and the weights' hash
    large = yaml.safe_load((path / "large_files.yml").read_text(encoding="utf-8"))["large_files"]
    assert large[0]["url"] == f"https://example.org/{exported.bundle}/model.pt"
    assert large[0]["hash_val"] == zoo_hash(path / "models" / "model.pt", large[0]["hash_type"])
    readme = (path / "docs" / "README.md").read_text(encoding="utf-8")
    for section in ("# Model Overview", "## Data", "## Training configuration", "## Performance", "# References"):
        assert section in readme
    assert f"{report['pe_mean']:.4g}" in readme
    assert (path / "LICENSE").read_bytes() == (BUNDLES / exported.bundle / "LICENSE").read_bytes()
    assert (path / "docs" / "data_license.txt").is_file()


def zoo_hash(path: Path, hash_type: str) -> str:
    """The digest MONAI's ``download_url`` compares with ``hash_val``."""
    from monai.apps.utils import check_hash

    digest = hashlib.new(hash_type, path.read_bytes()).hexdigest()
    assert check_hash(path, digest, hash_type)
    return digest


@pytest.mark.slow
def test_export_refuses_a_checkpoint_of_another_network_and_an_existing_folder(ceph_trained, spine_trained, tmp_path):
    tiny = overrides_of(CEPH_TINY)
    with pytest.raises(ExportError, match="does not fit the exported network_def"):
        export_bundle("scn_ceph", spine_trained / "models" / "model.pt", tmp_path / "a", ["cpu.yaml"], tiny)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="not empty"):
        export_bundle("scn_ceph", ceph_trained / "models" / "model.pt", tmp_path / "b", ["cpu.yaml"], tiny)
    with pytest.raises(ExportError, match="not a bundle folder"):
        export_bundle(
            "scn_ceph", ceph_trained / "models" / "model.pt", tmp_path / "b", ["cpu.yaml"], tiny, overwrite=True
        )
    assert (tmp_path / "b" / "notes.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.slow
def test_export_refuses_the_universal_training_and_a_checkpoint_of_the_other_kind(
    gu2net_universal_trained, gu2net_head_trained, tmp_path
):
    """A model-zoo bundle predicts one domain of gu2net_universal: the universal model's training configs are
    refused, and so is a universal checkpoint exported as a single-domain model, or the reverse."""
    universal, head = (run / "models" / "model.pt" for run in (gu2net_universal_trained, gu2net_head_trained))
    tiny = overrides_of([*gu2net_domains(), *GU2NET_TINY])
    with pytest.raises(ExportError, match=r"universal.yaml trains one model on every domain.*domain.yaml"):
        export_bundle("gu2net_universal", universal, tmp_path / "a", ["cpu.yaml", "universal.yaml"], tiny)
    with pytest.raises(ExportError, match=r"universal model of the domains \['head', 'hand', 'chest'\]"):
        export_bundle("gu2net_universal", universal, tmp_path / "b", ["cpu.yaml", "domain.yaml"], tiny)
    with pytest.raises(ExportError, match="single-domain model, not a universal one"):
        export_bundle(
            "gu2net_universal", head, tmp_path / "c", ["cpu.yaml", "domain.yaml"], {**tiny, "universal": True}
        )
    assert not any(tmp_path.iterdir())
