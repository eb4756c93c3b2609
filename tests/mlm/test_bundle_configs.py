"""Bundle config reading in this process (``mlm.bundle.configs``) and the landmarks a bundle takes from its datalist
(``mlm.bundle.landmarks``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from mlm.bundle import (
    bundle_config_parser,
    datalist_landmark_names,
    datalist_num_landmarks,
    resolve_file_macros,
)
from mlm.bundle.launch import BUNDLES_DIR

CEPH_NAMES = ["sella", "nasion", "orbitale"]


def _datalist(folder: Path, **header) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "datalist.json").write_text(json.dumps({"name": "x", **header, "training": []}), encoding="utf-8")
    return folder


# ---------------------------------------------------------------- landmarks from the datalist header


def test_landmarks_come_from_the_datalist_header(tmp_path):
    data = _datalist(tmp_path / "d", num_landmarks=2, landmark_names=["a", "b"])
    assert datalist_num_landmarks(data, CEPH_NAMES) == 2
    assert datalist_landmark_names(data, 2, CEPH_NAMES) == ["a", "b"]


def test_names_alone_give_the_count(tmp_path):
    data = _datalist(tmp_path / "d", landmark_names=["a", "b", "c", "d"])
    assert datalist_num_landmarks(data, CEPH_NAMES) == 4


def test_a_datalist_without_a_declaration_or_no_datalist_falls_back_to_the_bundles_names(tmp_path):
    data = _datalist(tmp_path / "d")
    for folder in (data, tmp_path / "nowhere"):
        assert datalist_num_landmarks(folder, CEPH_NAMES) == 3
        assert datalist_landmark_names(folder, 3, CEPH_NAMES) == CEPH_NAMES


def test_a_count_without_names_gets_generic_names_unless_it_is_the_bundles(tmp_path):
    data = _datalist(tmp_path / "d", num_landmarks=5)
    assert datalist_landmark_names(data, 5, CEPH_NAMES) == [f"landmark_0{k}" for k in range(5)]
    assert datalist_landmark_names(_datalist(tmp_path / "e", num_landmarks=3), 3, CEPH_NAMES) == CEPH_NAMES


def test_bad_declarations_raise_naming_the_datalist(tmp_path):
    with pytest.raises(ValueError, match="datalist.json.*positive integer"):
        datalist_num_landmarks(_datalist(tmp_path / "a", num_landmarks=0), CEPH_NAMES)
    with pytest.raises(ValueError, match="names 2 landmarks but the bundle predicts 3"):
        datalist_landmark_names(_datalist(tmp_path / "b", landmark_names=["a", "b"]), 3, CEPH_NAMES)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "datalist.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        datalist_num_landmarks(tmp_path / "c", CEPH_NAMES)


# ---------------------------------------------------------------- macros resolved against the bundle's folder


def test_file_macros_resolve_against_the_root_like_monai_in_that_folder(tmp_path, monkeypatch):
    from monai.bundle import ConfigParser

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "facts.yaml").write_text("a: 5\nnested: {b: [1, 2], c: '@a'}\n", encoding="utf-8")
    config = {
        "a": "%configs/facts.yaml#a",
        "x": {"y": "%configs/facts.yaml#nested#b"},
        "z": "%a",
        "n": "%configs/facts.yaml#nested",
    }
    resolved = resolve_file_macros(config, tmp_path)
    assert resolved == {"a": 5, "x": {"y": [1, 2]}, "z": "%a", "n": {"b": [1, 2], "c": "@a"}}
    assert config["a"] == "%configs/facts.yaml#a"  # a copy
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser(json.loads(json.dumps(config)))
    parser.parse()
    assert parser.get_parsed_content("n") == {"b": [1, 2], "c": 5} == ConfigParser(resolved).get_parsed_content("n")
    with pytest.raises(KeyError, match="has no item 'missing'"):
        resolve_file_macros({"a": "%configs/facts.yaml#missing"}, tmp_path)
    with pytest.raises(FileNotFoundError, match="other.yaml"):
        resolve_file_macros({"a": "%configs/other.yaml#a"}, tmp_path)


def test_file_macros_inside_what_a_macro_brings_resolve_too_like_monai(tmp_path, monkeypatch):
    """facts.yaml of gu2net_universal reads domains.yaml: a macro inside a macro's content, resolved by MONAI."""
    from monai.bundle import ConfigParser

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "domains.yaml").write_text("head: {size: [4, 5]}\n", encoding="utf-8")
    (tmp_path / "configs" / "facts.yaml").write_text("size: '%configs/domains.yaml#head#size'\n", encoding="utf-8")
    config = {"size": "%configs/facts.yaml#size"}
    assert resolve_file_macros(config, tmp_path) == {"size": [4, 5]}
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser(dict(config))
    parser.parse()
    assert parser.get_parsed_content("size") == [4, 5]
    (tmp_path / "configs" / "loop.yaml").write_text(
        "a: '%configs/loop.yaml#b'\nb: '%configs/loop.yaml#a'\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="config macros in a cycle"):
        resolve_file_macros({"a": "%configs/loop.yaml#a"}, tmp_path)


def test_bundle_parser_builds_a_bundle_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _datalist(tmp_path / "data", num_landmarks=5, spatial_dims=2, landmark_names=list("abcde"))
    parser = bundle_config_parser(BUNDLES_DIR / "scn_ceph", ["train.yaml", "cpu.yaml"], {"dataset_dir": str(data)})
    assert parser["bundle_root"] == str(BUNDLES_DIR / "scn_ceph") and "_meta_" in parser
    assert parser["pixdim"] == 0.9375 and parser["num_filters"] == 64  # the bundle's facts, cpu.yaml's sizes
    assert parser["network_def"]["spatial_downsample"] == 16  # the 2D recipe's, inside network_def
    # the landmark count and names follow the datalist: a 5-landmark network, as the data names them
    assert parser.get_parsed_content("num_landmarks") == 5
    assert parser.get_parsed_content("landmark_names") == list("abcde")
    net = parser.get_parsed_content("network_def")
    assert net.num_landmarks == 5
    # --network_def#... reaches the network (a dict in the shared config), --pixdim replaces a fact
    parser = bundle_config_parser(
        BUNDLES_DIR / "scn_ceph", ["inference.yaml"], {"network_def#spatial_downsample": 4, "pixdim": 2.0}
    )
    assert parser["network_def"]["spatial_downsample"] == 4 and parser["pixdim"] == 2.0
    assert parser.get_parsed_content("num_landmarks") == 19  # no datalist at the default path: the bundle's names


def test_the_shared_configs_hold_no_bundle_value():
    """What differs between bundles is read from their facts: the base's configs name no dataset."""
    base = BUNDLES_DIR / "base" / "configs"
    lines = [line for p in sorted(base.glob("*.yaml")) for line in p.read_text(encoding="utf-8").splitlines()]
    text = "\n".join(line for line in lines if not line.strip().startswith("#"))
    for word in ("ceph", "spine", "hand_", "sella", "phantoms"):
        assert word not in text, word
    assert os.path.islink(BUNDLES_DIR / "scn_ceph" / "configs" / "train.yaml")
    assert (
        yaml.safe_load((base / "train.yaml").read_text(encoding="utf-8"))["dataset_dir"]
        == "%configs/facts.yaml#dataset_dir"
    )
