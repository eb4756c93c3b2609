"""Predict landmarks on a folder of a user's own images with a bundle's own inference, without writing a datalist.

:func:`predict_folder` (``scripts/predict.py``) finds the images of a folder
(:func:`mlm.bundle.image_folder.find_images`: PNG, JPEG, BMP, TIFF, NIfTI, MetaImage, NRRD, DICOM), names them after
their files (:func:`mlm.bundle.image_folder.image_ids`: safe, unique), and runs the
bundle's ``configs/inference.yaml`` with the chosen overlays in this process (:func:`inference_parser`: a MONAI
``ConfigParser`` built as ``python -m monai.bundle run`` builds it) over a temporary datalist. The bundle's own
preprocessing, network, inferer, post-processing and handlers run unchanged: the predictions are exactly those of
``python -m monai.bundle run --config_file "['configs/inference.yaml', ...]"`` on the same images. The bundle writes
its prediction files (``<id>_landmarks.json``) into a temporary folder inside the output folder (removed at the end);
from each, as soon as it is written, this module writes into the output folder:

- ``<id>.json``: the project's landmark JSON (readable by :func:`transforms.io.read_landmark_file`, so it can serve
  as a landmark file of the same image): world mm in LPS (``points``), the voxel indices of the original image
  (``voxel_points``), the landmark ``names`` and heatmap peak ``values``;
- ``<id>.csv``: one row per landmark: ``name, x_mm, y_mm[, z_mm]`` (the JSON's world coordinates, LPS) and
  ``x_px, y_px[, z_px]`` (voxel indices of the original image, index ``i`` = centre of voxel ``i``); a missing
  landmark has empty cells;
- ``<id>.mrk.json``: a 3D Slicer markups fiducial list (:mod:`transforms.io.slicer_markups`, LPS) that lies on the
  image when both are opened in Slicer;
- ``<id>_overlay.png``: the image (upright; maximum-intensity projections in 3D) with the predicted landmarks and
  their names;

and ``predictions.csv``, one row per image (status, units, landmarks found, the error of an image that failed).

Pixel-only images (PNG, JPEG, BMP, TIFF: no pixel size in the file) are predicted in px unless a ``spacing`` is given:
their ``<id>.json`` has ``"coordinate_system": "voxel", "units": "px"`` with ``points`` = pixel indices, the CSV's mm
cells are empty. With a spacing they are in mm like any other image. Note that MONAI (and so the project's world
frame) reads such a file with an identity RAS affine: its LPS ``x_mm, y_mm`` are ``-column * spacing, -row *
spacing``. The markups always follow the frame 3D Slicer (ITK) gives the file, whatever the spacing: origin 0, 1 mm
per pixel or the resolution a JPEG or TIFF declares (96 dpi: 0.2646 mm), LPS ``(column, row, 0) * that``.

With the bundle's ``save_heatmaps`` option (``overrides={"save_heatmaps": True}``) its ``<id>_heatmaps.nii.gz`` are
kept too.

DICOM: a 2D bundle reads every ``.dcm`` file as one image (radiographs); a 3D bundle reads every folder holding
``.dcm`` files (the images folder itself, or one of its sub-folders) as one series (MONAI's ``ITKReader``; with
several series in one folder it takes the first and warns).

What of the bundle's config is relied on: ``preprocessing`` (its first ``LoadImaged``/``CheckedLoadImaged`` step
reads the images for the checks and the overlays), ``network_def`` (the model check), ``dataset_dir`` and
``infer_split`` (the temporary datalist), ``ckpt_path``, ``output_dir`` (and ``prediction_dir`` when defined),
``evaluator`` (its ``ITERATION_COMPLETED`` event drives the files and the progress bar), ``initialize``, ``run`` and
``finalize`` as MONAI runs them, ``spatial_dims`` when the loader does not tell the dimensionality, and the prediction
file's ``names``, ``points``, ``voxel_points`` and ``values``.

Bad input: a missing images folder, one without images, an output folder that exists and is not empty (without
``overwrite``), a model that does not fit the bundle's network (:func:`mlm.bundle.check_checkpoint_compatible`) raise
before anything is written. An image that cannot be read (the bundle's own loader, first step of its
``preprocessing``, is tried on every image first) is reported in the summary and the others are predicted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlm.bundle.checkpoints import check_checkpoint_compatible, load_checkpoint
from mlm.bundle.configs import resolve_file_macros
from mlm.bundle.geometry import checkpoint_geometry, geometry_overrides
from mlm.bundle.image_folder import FolderImage, find_images, is_inside
from mlm.data.datalist import check_item_spacing
from transforms.io.atomic import atomic_write, output_path
from transforms.io.slicer_markups import write_markups_json

__all__ = [
    "MANAGED_KEYS",
    "SUMMARY_FILE",
    "ImageResult",
    "PredictError",
    "PredictSummary",
    "bundle_folder",
    "inference_parser",
    "predict_folder",
]

#: config ids that :func:`predict_folder` sets itself (the data, the model and where the bundle writes)
MANAGED_KEYS = ("dataset_dir", "infer_split", "ckpt_path", "output_dir", "prediction_dir")
#: the summary file, one row per image
SUMMARY_FILE = "predictions.csv"
#: the split of the temporary datalist
_SPLIT = "predict"
#: the suffix of the bundle's prediction files (``transforms.post.SaveLandmarksd``)
_BUNDLE_SUFFIX = "_landmarks.json"


class PredictError(ValueError):
    """The prediction cannot run as asked (no images, an output folder in the way, a model that does not fit)."""


@dataclass
class ImageResult:
    """What happened to one image (a row of ``predictions.csv``).

    Attributes:
        id: the image's output name. image: its path. status: ``"ok"`` or ``"error"``.
        units: ``"mm"`` or ``"px"`` (None when it failed). found / missing: landmarks predicted / marked missing
        (decoded outside the image). error: why it failed (``""`` when it did not).
    """

    id: str
    image: str
    status: str
    units: str | None = None
    found: int = 0
    missing: int = 0
    error: str = ""


@dataclass
class PredictSummary:
    """The outcome of :func:`predict_folder`.

    Attributes:
        out: the output folder. results: one :class:`ImageResult` per image found, in file order.
        ignored: files of the folder that are not images (skipped). notes: remarks for the user (e.g. a spacing
        that applied to no image). summary_file: ``out / predictions.csv``.
    """

    out: Path
    results: list[ImageResult]
    ignored: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def summary_file(self) -> Path:
        return self.out / SUMMARY_FILE


# ------------------------------------------------------------------------------------------------------- bundle
def bundle_folder(bundle: str | os.PathLike) -> Path:
    """The folder of ``bundle``: a folder holding ``configs/inference.yaml`` (or ``.json``), or a name under the
    repository's ``bundles/``.

    Raises:
        FileNotFoundError: neither.
    """
    from mlm.bundle.launch import BUNDLES_DIR

    for path in (Path(bundle), BUNDLES_DIR / str(bundle)):
        if _inference_config(path) is not None:
            return path.resolve()
    raise FileNotFoundError(
        f"no bundle {str(bundle)!r}: expected a bundle folder holding configs/inference.yaml, or one of "
        f"{sorted(p.name for p in BUNDLES_DIR.iterdir() if p.is_dir())} (in {BUNDLES_DIR})."
    )


def _inference_config(folder: Path) -> Path | None:
    for name in ("inference.yaml", "inference.json"):
        if (folder / "configs" / name).is_file():
            return folder / "configs" / name
    return None


def _overlay(folder: Path, config: str | os.PathLike) -> Path:
    path = folder / "configs" / str(config)
    path = path if path.is_file() else Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config {str(config)!r} is neither in {folder / 'configs'} nor a file.")
    return path


def inference_parser(
    bundle: str | os.PathLike,
    configs: Sequence[str | os.PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
):
    """A MONAI ``ConfigParser`` of the bundle's inference, as ``python -m monai.bundle run`` builds it in the bundle's
    folder: ``configs/inference.yaml`` and the overlays ``configs`` merged in order (``+key`` merges), the metadata
    (``_meta_``), ``bundle_root`` set to the bundle's folder, then the ``overrides`` (``{"num_filters": 32,
    "network_def#num_levels": 3}``: ids as on the command line, ``#`` or ``::``); the config macros naming files
    (``'%configs/facts.yaml#pixdim'``) resolved against the bundle's folder (:func:`mlm.bundle.resolve_file_macros`).

    Args:
        bundle: a bundle name or folder (:func:`bundle_folder`).
        configs: overlays: names in the bundle's ``configs/`` (``"cpu.yaml"``) or paths.
        overrides: config ids and values.
    """
    from monai.bundle import ConfigParser

    folder = bundle_folder(bundle)
    files = [_inference_config(folder), *(_overlay(folder, c) for c in configs)]
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    metadata = folder / "configs" / "metadata.json"
    if metadata.is_file():
        parser.read_meta(str(metadata))
    parser["bundle_root"] = str(folder)
    for key, value in (overrides or {}).items():
        parser[str(key).replace("#", "::")] = value
    parser.set(resolve_file_macros(parser.get(), folder))
    return parser


def _run_expressions(parser, id: str) -> None:
    """Evaluate the config item ``id`` (a list of expressions: ``initialize``, ``run``, ``finalize``) as MONAI's
    ``ConfigWorkflow`` does, if the config has it."""
    if id not in parser:
        return
    if isinstance(parser[id], list):
        for i in range(len(parser[id])):
            parser.get_parsed_content(f"{id}::{i}")
            parser.ref_resolver.remove_resolved_content(f"{id}::{i}")
    else:
        parser.get_parsed_content(id)
        parser.ref_resolver.remove_resolved_content(id)


#: the loading transforms :func:`_image_loader` looks for, by class name: a model-zoo export vendors the project's
#: code under its own ``scripts`` package, so its classes are copies, not the ones imported here
_LOADERS = ("LoadImaged", "CheckedLoadImaged")


def _image_loader(preprocessing: Any) -> Any:
    """The bundle's image loader: the steps of its ``preprocessing`` up to its first ``LoadImaged`` or
    ``CheckedLoadImaged`` (a ``Compose``).

    Raises:
        PredictError: the preprocessing has no such step (the original image could not be shown or checked).
    """
    from monai.transforms import Compose

    steps = list(preprocessing.flatten().transforms) if isinstance(preprocessing, Compose) else [preprocessing]
    for n, step in enumerate(steps):
        if any(c.__name__ in _LOADERS for c in type(step).__mro__):
            return Compose(steps[: n + 1])
    names = [type(t).__name__ for t in steps]
    raise PredictError(f"the bundle's preprocessing has no image loading step ({' or '.join(_LOADERS)}): {names}.")


def _loader_dims(loader: Any, parser) -> int | None:
    """The bundle's dimensionality: its ``CheckedLoadImaged``'s, else the config's ``spatial_dims``."""
    for step in getattr(loader, "transforms", [loader]):
        dims = getattr(getattr(step, "loader", None), "spatial_dims", None)
        if dims in (2, 3):
            return int(dims)
    if "spatial_dims" in parser:
        dims = parser.get_parsed_content("spatial_dims")
        return int(dims) if dims in (2, 3) else None
    return None


# ------------------------------------------------------------------------------------------------------- outputs
@dataclass
class _Loaded:
    """What the image check learnt about an image: its pixel spacing (pixel-only files) and where 3D Slicer puts it."""

    image: FolderImage
    spacing: list[float] | None
    slicer: np.ndarray  # 4x4: voxel index (i, j, k or 0, 1) -> LPS mm as 3D Slicer places the file
    dims: int | None

    @property
    def units(self) -> str:
        return "px" if self.image.pixel_only and self.spacing is None else "mm"


def _rows(points: Any, dims: int) -> np.ndarray:
    """A JSON ``points`` list (``null`` = missing) as an ``(N, dims)`` float64 array with NaN rows."""
    return np.asarray([[math.nan] * dims if p is None else [float(c) for c in p] for p in points], dtype=np.float64)


def _cell(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"


def _csv_text(names: Sequence[str], world: np.ndarray, voxels: np.ndarray, units: str) -> str:
    dims = voxels.shape[1]
    buf = io.StringIO()
    if units == "px":
        buf.write("# coordinate_system: voxel\n")
        buf.write(
            "# pixel-only image (no pixel size in the file): x_mm, y_mm are empty; x_px, y_px are pixel indices "
            "(x = column, y = row, index i = centre of pixel i); pass a spacing (--spacing) to get mm\n"
        )
    else:
        buf.write("# coordinate_system: LPS\n")
        buf.write(
            "# x_mm, y_mm(, z_mm): world mm, LPS (as in the .json); x_px, y_px(, z_px): voxel indices of the original "
            "image (index i = centre of voxel i); empty cells: landmark not found\n"
        )
    w = csv.writer(buf, lineterminator="\n")
    axes = "xyz"[:dims]
    w.writerow(["name", *(f"{a}_mm" for a in axes), *(f"{a}_px" for a in axes)])
    for name, p_mm, p_px in zip(names, world, voxels):
        mm = ["" for _ in axes] if units == "px" else [_cell(v) for v in p_mm]
        w.writerow([name, *mm, *(_cell(v) for v in p_px)])
    return buf.getvalue()


def _as_4x4(affine: np.ndarray) -> np.ndarray:
    """A ``(D+1, D+1)`` voxel-to-world affine (D = 2 or 3) as 4x4 (a 2D image lies in the plane k = 0)."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape == (4, 4):
        return a
    out = np.eye(4)
    out[:2, :2], out[:2, 3] = a[:2, :2], a[:2, 2]
    return out


def _slicer_frame(image: FolderImage, ras_affine: np.ndarray) -> np.ndarray:
    """The 4x4 voxel-index -> LPS mm map of ``image`` as 3D Slicer places it.

    Slicer reads images with ITK. For files with a pixel size in them (NIfTI, MetaImage, NRRD, DICOM) that is the
    geometry MONAI reads too (``ras_affine``, the loaded image's ``original_affine``), in LPS. Pixel-only files
    (PNG, JPEG, BMP, TIFF) MONAI reads with an identity affine, while ITK gives them origin 0 and 1 mm per pixel, or
    the resolution the file declares (JPEG and TIFF dots per inch: 96 dpi = 0.2646 mm): that header is read here.
    """
    if not image.pixel_only:
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ _as_4x4(ras_affine)
    import SimpleITK as sitk

    frame = np.eye(4)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(image.path))
        reader.ReadImageInformation()
    except RuntimeError:  # a file ITK cannot read (PIL can): its defaults, 1 mm per pixel from 0
        return frame
    n = min(reader.GetDimension(), 3)
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(reader.GetDimension(), -1)[:n, :n]
    frame[:n, :n] = direction * np.asarray(reader.GetSpacing()[:n], dtype=np.float64)
    frame[:n, 3] = reader.GetOrigin()[:n]
    return frame


def _markups_lps(loaded: _Loaded, voxels: np.ndarray) -> np.ndarray:
    """``(N, 3)`` LPS positions of the landmarks (voxel indices ``(N, D)`` of the original image) where 3D Slicer
    places them on the image file (:func:`_slicer_frame`); a 2D image's points lie in its plane."""
    n, dims = voxels.shape
    index = np.concatenate([voxels, np.zeros((n, 3 - dims)), np.ones((n, 1))], axis=1)
    return (index @ loaded.slicer.T)[:, :3]


def _display_array(image: torch.Tensor) -> np.ndarray:
    """A loaded image ``(C, *S)`` as the array the overlay draws: channel and trailing singleton axes dropped."""
    arr = np.asarray(torch.as_tensor(image).detach().cpu().float())
    arr = arr[0] if arr.ndim > 1 else arr
    while arr.ndim > 2 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


class _Writer:
    """Writes one image's files from the bundle's prediction record (see the module docstring)."""

    def __init__(self, out: Path, loader: Any, bundle: str, model: Path):
        self.out = out
        self.loader = loader
        self.bundle = bundle
        self.model = model

    def __call__(self, loaded: _Loaded, record: Mapping[str, Any]) -> ImageResult:
        from mlm.visualize import plot_overlay

        item, units = loaded.image.id, loaded.units
        dims = next((len(p) for p in record["voxel_points"] if p is not None), loaded.dims)
        names = [str(n) for n in record["names"]]
        lps = _rows(record["points"], dims)
        voxels = _rows(record["voxel_points"], dims)
        found = int(np.isfinite(voxels).all(axis=1).sum())
        content: dict[str, Any] = {"id": item, "image": str(loaded.image.path), "bundle": self.bundle}
        content["model"] = str(self.model)
        if units == "px":
            content.update(
                {
                    "coordinate_system": "voxel",
                    "units": "px",
                    "convention": "pixel indices of the image (x = column, y = row; index i = centre of pixel i); the "
                    "file has no pixel size: pass a spacing (--spacing) to get mm",
                    "names": names,
                    "points": record["voxel_points"],
                }
            )
        else:
            content.update({k: v for k, v in record.items() if k not in ("image",)})
            if loaded.spacing is not None and loaded.image.pixel_only:
                content["pixel_spacing"] = loaded.spacing
                content["pixel_spacing_source"] = "given by the user (--spacing): the file has no pixel size"
        content["voxel_coordinate_system"] = "voxel indices of the original image (index i = centre of voxel i)"
        content["voxel_points"] = record["voxel_points"]
        if "values" in record:
            content["values"] = record["values"]
        atomic_write(output_path(self.out, f"{item}.json", item), json.dumps(content, indent=2) + "\n")
        atomic_write(output_path(self.out, f"{item}.csv", item), _csv_text(names, lps, voxels, units))
        write_markups_json(
            output_path(self.out, f"{item}.mrk.json", item),
            _markups_lps(loaded, voxels),
            names,
            coordinate_system="LPS",
            name=f"{item}_landmarks",
        )
        image = self.loader({"image": str(loaded.image.path)})["image"]
        title = f"{item}: {found} of {len(names)} landmarks ({units})"
        overlay = output_path(self.out, f"{item}_overlay.png", item)
        plot_overlay(_display_array(image), voxels, None, overlay, names, title=title)
        return ImageResult(item, str(loaded.image.path), "ok", units, found, len(names) - found)


def _summary_text(results: Sequence[ImageResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "image", "status", "units", "landmarks_found", "landmarks_missing", "error"])
    for r in results:
        counts = [r.found, r.missing] if r.status == "ok" else ["", ""]
        w.writerow([r.id, r.image, r.status, r.units or "", *counts, r.error])
    return buf.getvalue()


def _image_error(exc: BaseException, image: Path) -> str:
    """One line saying why ``image`` failed: the first message of ``exc``'s chain (outermost first) that names the
    image (the project's loaders name the file first), else the chain's summary (:func:`mlm.bundle.error_summary`)."""
    from mlm.bundle.errors import error_summary

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = " ".join(str(e).split())
        if str(image) in text:
            return text
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return error_summary(exc).removeprefix("error: ")


def _batch_ids(batch: Any) -> list[str]:
    """The item ids of an engine's batch (decollated: a list of dicts; or one collated dict)."""
    if isinstance(batch, Mapping):
        ids = batch.get("id")
        return [str(i) for i in (ids if isinstance(ids, list | tuple) else [ids])]
    return [str(d.get("id")) for d in batch]


def _prediction_file(parser, bundle_out: Path, item: str) -> Path:
    """Where the bundle wrote ``item``'s prediction file: its ``prediction_dir`` (default ``output_dir/predictions``)."""
    folder = bundle_out / "predictions"
    if "prediction_dir" in parser:
        folder = Path(parser.get_parsed_content("prediction_dir"))
    path = folder / f"{item}{_BUNDLE_SUFFIX}"
    if not path.is_file():
        hits = sorted(bundle_out.rglob(f"{item}{_BUNDLE_SUFFIX}"))
        if not hits:
            raise FileNotFoundError(
                f"the bundle wrote no prediction file {item}{_BUNDLE_SUFFIX} under {bundle_out} (its inference must "
                "write <output_dir>/predictions/<id>_landmarks.json)."
            )
        path = hits[0]
    return path


def _check_out(out: Path, images: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PredictError(f"{out}: the output folder is a file.")
    if out.exists() and out.resolve() == images.resolve():
        raise PredictError(f"{out}: the output folder is the images folder; choose another one.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out}: the output folder exists and is not empty; pass --overwrite (overwrite=True) to replace the "
            "files of the same names in it, or choose another folder."
        )


def predict_folder(
    bundle: str | os.PathLike,
    model: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    configs: Sequence[str | os.PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
    spacing: Sequence[float] | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictSummary:
    """Predict the landmarks of every image of ``images`` with ``bundle``'s inference and ``model``; write the files
    of the module docstring into ``out``.

    Args:
        bundle: bundle name under ``bundles/`` or bundle folder.
        model: the trained model: a training checkpoint (``models/model.pt``) or a plain state dict of the network.
        images: the images folder (:func:`mlm.bundle.image_folder.find_images`).
        out: the output folder (created; every file is written inside it, atomically).
        configs: overlays of ``configs/inference.yaml``, in order, as the model was trained (e.g. ``["cpu.yaml"]``).
        overrides: config ids and values, as the training's command-line overrides (``{"num_filters": 32}``); the
            ids of :data:`MANAGED_KEYS` are set here and cannot be overridden. The preprocessing geometry recorded in
            a training checkpoint (:class:`mlm.bundle.geometry.PreprocessingGeometry`: ``pixdim``,
            ``preprocessed_size``, ``resize_mode``, ...) is applied as overrides unless given here: the images are
            prepared as in training whatever the overlays.
        spacing: mm per pixel of the pixel-only images (PNG, JPEG, BMP, TIFF): one value or one per axis; images
            whose files have a pixel size keep theirs. None: pixel-only images are predicted in px.
        recursive: also predict the images of sub-folders.
        overwrite: write into an existing, non-empty ``out`` (files of the same names are replaced; others stay).
        progress: show progress bars (tqdm, on stderr).

    Returns:
        the :class:`PredictSummary`; images that could not be read are in ``failed`` (and in ``predictions.csv``).

    Raises:
        FileNotFoundError: no bundle, config, images folder or model file.
        FileExistsError: ``out`` exists, is not empty and ``overwrite`` is False.
        PredictError: no images in the folder, a managed key overridden, a bad spacing, ``out`` a file or the
            images folder.
        ValueError: the model does not fit the bundle's network (it names the model file).
    """
    images, out, model = Path(images).absolute(), Path(out).absolute(), Path(model).absolute()
    overrides = dict(overrides or {})
    managed = sorted({k for k in overrides if re.split(r"#|::", str(k))[0] in MANAGED_KEYS})
    if managed:
        raise PredictError(
            f"cannot override {managed}: predict sets them (the images folder, the model and where the bundle writes)."
        )
    folder = bundle_folder(bundle)
    if not images.exists():
        raise FileNotFoundError(f"{images}: images folder not found.")
    _check_out(out, images, overwrite)
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found.")
    trained = checkpoint_geometry(model)
    if trained:
        overrides = {**geometry_overrides(trained), **overrides}
    with _bundle_on_path(folder):
        return _predict(folder, model, images, out, configs, overrides, spacing, recursive, progress)


@contextlib.contextmanager
def _bundle_on_path(folder: Path) -> Iterator[None]:
    """The bundle's folder on ``sys.path`` while it is parsed and run, as MONAI's ``ConfigWorkflow.run`` does: the
    configs of a model-zoo bundle (e.g. one exported by ``scripts/export_bundle.py``) name its ``scripts`` package.
    The modules imported from the folder are forgotten afterwards, so that another bundle's ``scripts`` can load."""
    before = set(sys.modules)
    sys.path.insert(1, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            source = getattr(sys.modules[name], "__file__", None)
            if source and is_inside(Path(source), folder):
                del sys.modules[name]


def _predict(
    folder: Path,
    model: Path,
    images: Path,
    out: Path,
    configs: Sequence[str | os.PathLike],
    overrides: dict[str, Any],
    spacing: Sequence[float] | None,
    recursive: bool,
    progress: bool,
) -> PredictSummary:
    """:func:`predict_folder` once its arguments are checked."""
    from tqdm import tqdm

    parser = inference_parser(folder, configs, overrides)
    loader = _image_loader(parser.get_parsed_content("preprocessing"))
    dims = _loader_dims(loader, parser)
    found, ignored = find_images(images, dims, recursive, exclude=[out], reserved=[Path(SUMMARY_FILE).stem])
    if not found:
        kinds = "PNG, JPEG, BMP, TIFF, NIfTI, MHA/MHD, NRRD, DICOM (.dcm)"
        more = f"; {len(ignored)} other files skipped (e.g. {ignored[0].name})" if ignored else ""
        hint = "" if recursive else " (--recursive / recursive=True looks in sub-folders)"
        raise PredictError(f"{images}: no images found ({kinds}){more}{hint}.")
    notes: list[str] = []
    if spacing is not None:
        values = [float(s) for s in spacing]
        values = values * dims if len(values) == 1 and dims else values
        spacing = check_item_spacing(values, dims, "--spacing")
        if not any(im.pixel_only for im in found):
            notes.append(f"--spacing {spacing} applies to pixel-only images (PNG, JPEG, BMP, TIFF): there are none.")
    elif any(im.pixel_only for im in found):
        count = sum(im.pixel_only for im in found)
        notes.append(
            f"{count} pixel-only images (PNG, JPEG, BMP, TIFF) were predicted in px, without a spacing: the bundle "
            "reads them as 1 mm per pixel; if the model was trained on mm, pass their spacing (--spacing)."
        )
    check_checkpoint_compatible(model, {"model": parser.get_parsed_content("network_def")}, load_checkpoint(model))

    results: dict[str, ImageResult] = {}
    loaded: list[_Loaded] = []
    for image in tqdm(found, desc="reading images", unit="image", disable=not progress, leave=False):
        try:
            img = loader({"image": str(image.path)})["image"]
        except Exception as e:  # noqa: BLE001 - any failure of the bundle's loader: report it, go on with the others
            results[image.id] = ImageResult(image.id, str(image.path), "error", error=_image_error(e, image.path))
            continue
        original = getattr(img, "meta", {}).get("original_affine")
        affine = np.asarray(getattr(img, "affine", np.eye(4)) if original is None else original, dtype=np.float64)
        pixel_spacing = spacing if image.pixel_only else None
        loaded.append(_Loaded(image, pixel_spacing, _slicer_frame(image, affine), dims))

    out.mkdir(parents=True, exist_ok=True)
    if loaded:
        writer = _Writer(out, loader, folder.name, model)
        work = Path(tempfile.mkdtemp(prefix=".predict-", dir=out))
        try:
            _run_bundle(parser, work, model, loaded, writer, results, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    ordered = [results[im.id] for im in found]
    atomic_write(out / SUMMARY_FILE, _summary_text(ordered))
    return PredictSummary(out, ordered, ignored, notes)


def _run_bundle(
    parser,
    work: Path,
    model: Path,
    loaded: Sequence[_Loaded],
    writer: _Writer,
    results: dict[str, ImageResult],
    progress: bool,
) -> None:
    """Run the bundle's inference over a temporary datalist of the ``loaded`` images (in ``work``), writing each
    image's files (``writer``) as soon as the bundle has predicted it; the results go into ``results``."""
    from ignite.engine import Events
    from tqdm import tqdm

    data_dir, bundle_out = work / "data", work / "bundle"
    items = []
    for entry in loaded:
        item: dict[str, Any] = {"id": entry.image.id, "image": str(entry.image.path.resolve())}
        if entry.spacing is not None:
            item["spacing"] = entry.spacing
        items.append(item)
    atomic_write(data_dir / "datalist.json", json.dumps({"name": "predict", _SPLIT: items}, indent=2) + "\n")
    parser.update(
        {"dataset_dir": str(data_dir), "infer_split": _SPLIT, "ckpt_path": str(model), "output_dir": str(bundle_out)}
    )
    by_id = {entry.image.id: entry for entry in loaded}
    bar = tqdm(total=len(loaded), desc="predicting", unit="image", disable=not progress)

    def write(engine) -> None:
        for item in _batch_ids(engine.state.batch):
            path = _prediction_file(parser, bundle_out, item)
            results[item] = writer(by_id[item], json.loads(path.read_text(encoding="utf-8")))
            heatmaps = path.with_name(f"{item}_heatmaps.nii.gz")  # the bundle's save_heatmaps option
            if heatmaps.is_file():
                os.replace(heatmaps, output_path(writer.out, heatmaps.name, item))
            bar.set_postfix_str(item, refresh=False)
            bar.update(1)

    try:
        parser.parse(reset=True)
        _run_expressions(parser, "initialize")
        evaluator = parser.get_parsed_content("evaluator")
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, write)
        if "run" in parser:
            _run_expressions(parser, "run")
        else:
            evaluator.run()
        _run_expressions(parser, "finalize")
    finally:
        bar.close()
    missing = [entry.image.id for entry in loaded if entry.image.id not in results]
    if missing:
        raise RuntimeError(f"the bundle's inference returned without predicting {missing} (see its log).")
