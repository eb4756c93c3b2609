"""The MONAI model zoo's checks of a bundle, reimplemented from its CI (Project-MONAI/model-zoo, ``ci/``).

What the zoo runs on a submitted bundle ``models/<name>`` and what each function here reproduces:

- ``ci/verify_bundle.py`` ``verify_bundle_directory``: the large files of ``large_files.yml`` are fetched with
  ``monai.apps.utils.download_url`` (``ci/utils.py`` ``download_large_files``; a file already there must match its
  hash), then ``configs/metadata.json`` and ``LICENSE`` must exist, and ``models/model.pt`` and an inference config
  should (:func:`check_large_files`, :func:`check_directory`).
- ``verify_version_changes``: ``version`` and ``changelog`` present, the version in the changelog, not already
  released (:func:`check_version`).
- ``verify_metadata_format``: ``monai.bundle.verify_metadata`` against the official schema the zoo downloads from
  the metadata's ``schema`` URL into ``eval/schema.json`` (:func:`check_metadata`; the schema file is given here).
- ``ci/get_bundle_requirements.py``: ``monai==``, ``torch==``, ``numpy==`` and ``name==version`` of
  ``required_packages_version`` are what the CI installs (:func:`requirements`).
- ``verify_data_shape``: ``monai.bundle.verify_net_in_out`` with ``net_id=network_def``, the inference config and
  ``bundle_root`` (:func:`check_data_shape`).
- ``verify_torchscript``: ``monai.bundle.ckpt_export`` of ``models/model.pt`` (a plain state dict: no
  ``key_in_ckpt``) and ``torch.jit.load`` of ``models/model.ts`` (:func:`check_torchscript`; here the two
  TorchScript modules are also compared with the eager network).
- ``verify_bundle_properties`` / ``ci/unit_tests``: ``ConfigWorkflow(workflow_type=...)``, ``initialize()``,
  ``check_properties()`` with MONAI's ``MetaProperties`` and ``TrainProperties``/``InferProperties`` must return no
  missing or wrongly referenced property, then ``run()`` and ``finalize()`` (:func:`check_workflow`); the
  multi-GPU test checks ``[train, multi_gpu_train]`` the same way (here in a one-process gloo group).
- the overlays a bundle ships beyond these (the zoo's unit tests check a bundle's override configs the same way):
  ``check_properties`` of each merged as its header says (:data:`OVERLAYS`, :func:`check_overlays`; not run).

The module imports nothing from this project, so that ``python zoo_checks.py BUNDLE ...`` runs in an environment
where only MONAI and the bundle's required packages are installed; it prints one JSON line with the checks passed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NECESSARY_FILES = ("configs/metadata.json", "LICENSE")
PREFERRED_FILES = ("models/model.pt",)
NET_ID = "network_def"
#: overlay configs of an exported bundle -> (workflow type, the configs each is checked on top of)
OVERLAYS = {
    "refine": ("train", [["configs/train.yaml"]]),
    "refine_inference": ("infer", [["configs/inference.yaml"], ["configs/inference.yaml", "configs/evaluate.yaml"]]),
    "train_sat": ("train", [["configs/train.yaml"]]),
    "train_amat": ("train", [["configs/train.yaml"]]),
    "attack": ("infer", [["configs/inference.yaml", "configs/evaluate.yaml"]]),
    "robustness": ("infer", [["configs/inference.yaml", "configs/evaluate.yaml"]]),
}


class ZooCheckError(AssertionError):
    """A bundle fails one of the model zoo's checks."""


def find_bundle_file(folder: str | os.PathLike, name: str) -> str | None:
    """``name.json``, ``name.yaml`` or ``name.yml`` in ``folder`` (the zoo accepts any of them), or None."""
    found = None
    for suffix in ("json", "yaml", "yml"):
        if (Path(folder) / f"{name}.{suffix}").is_file():
            found = f"{name}.{suffix}"
    return found


def check_large_files(bundle: Path) -> list[str]:
    """``large_files.yml``: a list of ``path``/``url``/``hash_val``/``hash_type`` entries whose files match.

    The zoo calls ``download_url(**entry, fuzzy=True)`` for each entry; for a file that is already in the bundle
    that checks its hash and downloads nothing. Returns the paths listed.
    """
    from monai.apps.utils import download_url
    from monai.bundle import ConfigParser

    name = find_bundle_file(bundle, "large_files")
    if name is None:
        return []
    parser = ConfigParser()
    parser.read_config(str(bundle / name))
    entries = parser.get()["large_files"]
    if not isinstance(entries, list) or not entries:
        raise ZooCheckError(f"{name}: 'large_files' must be a non-empty list.")
    paths = []
    for entry in entries:
        if set(entry) != {"path", "url", "hash_val", "hash_type"}:
            raise ZooCheckError(f"{name}: entry {entry} must have exactly path, url, hash_val, hash_type.")
        if not str(entry["url"]).startswith(("https://", "http://")):
            raise ZooCheckError(f"{name}: {entry['path']} has no download URL ({entry['url']!r}).")
        args = {k: v for k, v in entry.items() if k != "path" and v != ""}
        download_url(filepath=str(bundle / entry["path"]), fuzzy=True, **args)
        paths.append(entry["path"])
    return paths


def check_directory(bundle: Path) -> None:
    """The files every zoo bundle must have, and those it should have (``models/model.pt``, an inference config)."""
    for rel in NECESSARY_FILES + PREFERRED_FILES:
        if not (bundle / rel).is_file():
            raise ZooCheckError(f"necessary file {rel} is not existing.")
    if find_bundle_file(bundle / "configs", "inference") is None:
        raise ZooCheckError("inference config file is not existing.")


def _metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))


def check_version(bundle: Path, released: Sequence[str] = ()) -> str:
    """``version`` and ``changelog`` present, the version listed in the changelog and not among ``released``."""
    meta = _metadata(bundle)
    for key in ("version", "changelog"):
        if key not in meta:
            raise ZooCheckError(f"'{key}' is missing in configs/metadata.json.")
    if meta["version"] not in meta["changelog"]:
        raise ZooCheckError(f"version number: {meta['version']} is missing in 'changelog'.")
    if meta["version"] in released:
        raise ZooCheckError(f"version number: {meta['version']} is already used.")
    return meta["version"]


def check_metadata(bundle: Path, schema: str | os.PathLike) -> None:
    """``monai.bundle.verify_metadata`` against ``schema`` (the official model-zoo schema file)."""
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema))


def requirements(bundle: Path) -> list[str]:
    """The pip requirements the zoo's CI installs for the bundle (``ci/get_bundle_requirements.py``)."""
    meta = _metadata(bundle)
    libs = [
        f"{lib}=={meta[key]}"
        for key, lib in (("monai_version", "monai"), ("pytorch_version", "torch"), ("numpy_version", "numpy"))
        if key in meta
    ]
    for key in ("optional_packages_version", "required_packages_version"):
        libs += [f"{name}=={version}" for name, version in meta.get(key, {}).items()]
    return libs


def check_data_shape(bundle: Path, config: str) -> None:
    """``monai.bundle.verify_net_in_out`` as ``verify_data_shape`` calls it (on the CPU)."""
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id=NET_ID,
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / config),
        bundle_root=str(bundle),
        device="cpu",
    )


def check_torchscript(bundle: Path, config: str, work: Path) -> float:
    """``ckpt_export`` of ``models/model.pt``, ``torch.jit.load`` of ``models/model.ts``; both equal to eager.

    Returns the largest absolute difference of the two TorchScript modules' outputs from the eager network loaded
    with ``models/model.pt``, on a random input of the metadata's shape.
    """
    import torch
    from monai.bundle import ConfigParser, ckpt_export

    exported = work / "verify_model.ts"
    ckpt_export(
        net_id=NET_ID,
        filepath=str(exported),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / config),
        bundle_root=str(bundle),
    )
    loaded = [torch.jit.load(str(exported))]
    if (bundle / "models" / "model.ts").is_file():
        loaded.append(torch.jit.load(str(bundle / "models" / "model.ts")))
    parser = ConfigParser()
    parser.read_config(str(bundle / config))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    net = parser.get_parsed_content(NET_ID).cpu().eval()
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    image = next(iter(parser["_meta_#network_data_format#inputs"].values()))
    shape = [
        s if isinstance(s, int) else int(eval(str(s), {"__builtins__": {}}, {"n": 2, "p": 1}))  # noqa: S307
        for s in image["spatial_shape"]
    ]
    x = torch.rand(1, image["num_channels"], *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = net(x)
        return max(float((ts(x) - eager).abs().max()) for ts in loaded)


def check_workflow(
    bundle: Path,
    workflow_type: str,
    configs: Sequence[str],
    overrides: Mapping[str, Any],
    run: bool = True,
) -> None:
    """``ConfigWorkflow`` with MONAI's properties: ``initialize``, ``check_properties`` (must return nothing), then
    ``run`` and ``finalize`` (as the zoo's unit tests' ``check_workflow``)."""
    from monai.bundle import ConfigWorkflow
    from monai.bundle.properties import InferProperties, MetaProperties, TrainProperties

    workflow = ConfigWorkflow(
        workflow_type=workflow_type,
        config_file=[str(bundle / c) for c in configs],
        logging_file=str(bundle / "configs" / "logging.conf"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        **{"bundle_root": str(bundle), **overrides},
    )
    workflow.properties = {**MetaProperties, **(TrainProperties if workflow_type == "train" else InferProperties)}
    workflow.initialize()
    try:
        missing = workflow.check_properties()
        if missing:
            raise ZooCheckError(f"check properties for {list(configs)} failed: {missing}")
        if run:
            workflow.run()
    finally:
        workflow.finalize()


def check_overlays(bundle: Path, overrides: Mapping[str, Any]) -> list[str]:
    """``check_properties`` (no run) of each overlay of :data:`OVERLAYS` the bundle has, on top of its base configs;
    returns the overlays checked."""
    checked = []
    for name, (workflow_type, bases) in OVERLAYS.items():
        overlay = find_bundle_file(bundle / "configs", name)
        if overlay is None:
            continue
        for base in bases:
            check_workflow(bundle, workflow_type, [*base, f"configs/{overlay}"], overrides, run=False)
        checked.append(name)
    return checked


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_all(bundle: Path, schema: Path, dataset_dir: Path, work: Path, released: Sequence[str] = ()) -> dict:
    """Every check above on ``bundle``, data from ``dataset_dir``, outputs in ``work``; returns what passed."""
    sys.path.insert(0, str(bundle))  # as verify_bundle.py: the bundle's scripts/ must be importable
    work.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = {"large_files": check_large_files(bundle)}
    check_directory(bundle)
    done["directory"] = True
    done["version"] = check_version(bundle, released)
    check_metadata(bundle, schema)
    done["metadata"] = True
    done["requirements"] = requirements(bundle)
    inference = "configs/" + find_bundle_file(bundle / "configs", "inference")
    check_data_shape(bundle, inference)
    done["data_shape"] = True
    done["torchscript_max_abs_diff"] = check_torchscript(bundle, inference, work)
    data = {"dataset_dir": str(dataset_dir), "num_workers": 0}
    train = {
        **data,
        "ckpt_dir": str(work / "models"),
        "output_dir": str(work / "train"),
        "resume": False,
        "num_iterations": 1,
        "val_interval": 1,
        "max_train_items": 2,
        "max_val_items": 1,
    }
    check_workflow(bundle, "train", ["configs/train.yaml"], train)
    done["train_workflow"] = (work / "models" / "model.pt").is_file()
    check_workflow(bundle, "infer", [inference], {**data, "output_dir": str(work / "infer"), "max_items": 1})
    done["infer_workflow"] = any((work / "infer" / "predictions").glob("*_landmarks.json"))
    evaluate = ["configs/inference.yaml", "configs/evaluate.yaml"]
    check_workflow(bundle, "infer", evaluate, {**data, "output_dir": str(work / "evaluate")})
    done["evaluate_workflow"] = (work / "evaluate" / "metrics.json").is_file()
    done["overlay_properties"] = check_overlays(bundle, {**data, "output_dir": str(work / "overlays")})
    env = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    os.environ.update(env)
    check_workflow(bundle, "train", ["configs/train.yaml", "configs/multi_gpu_train.yaml"], train, run=False)
    done["multi_gpu_train_properties"] = True
    return done


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the MONAI model zoo's checks of a bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("--schema", type=Path, required=True, help="the official metadata schema file")
    p.add_argument("--dataset-dir", type=Path, required=True, help="data for the workflow runs")
    p.add_argument("--work", type=Path, help="folder for outputs (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        done = run_all(args.bundle.resolve(), args.schema, args.dataset_dir, work)
    print("ZOO_CHECKS " + json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
