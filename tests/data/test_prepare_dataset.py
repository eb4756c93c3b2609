"""The prepare_dataset.py CLI: conversion, generic-check, no silent overwrite."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mlm.data import isbi2015

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare_dataset.py"
_spec = importlib.util.spec_from_file_location("prepare_dataset", SCRIPT)
prepare_dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_dataset)


def test_cli_convert_check_and_refuse_overwrite(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "isbi"
    (root / "RawImage" / "TrainingData").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "RawImage" / "TrainingData" / "001.bmp")
    for doc in ("senior", "junior"):
        isbi2015.write_annotation_txt(root / "AnnotationsByMD" / f"400_{doc}" / "001.txt", np.ones((19, 2)))
    out = tmp_path / "out"
    assert prepare_dataset.main(["isbi2015", str(root), str(out)]) == 0
    assert prepare_dataset.main(["generic-check", str(out / "datalist.json")]) == 0
    assert "datalist.json: OK (training: 1; 1 images, 1 landmark sets checked)" in capsys.readouterr().out
    before = (out / "datalist.json").read_bytes()
    assert prepare_dataset.main(["isbi2015", str(root), str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert (out / "datalist.json").read_bytes() == before
    assert prepare_dataset.main(["isbi2015", str(root), str(out), "--overwrite"]) == 0
    assert prepare_dataset.main(["generic-check", str(tmp_path / "nope.json")]) == 1
