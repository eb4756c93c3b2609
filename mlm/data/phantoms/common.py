"""Shared pieces of the phantom generators: landmark names, splits, atomic image writers, progress bars.

Conventions (``../shared/docs/DESIGN.md``): landmark files hold physical mm with their convention stated
(the 3D phantoms use ITK's LPS); a landmark outside the field of view is a NaN row, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from mlm.data import csi2014, isbi2015
from transforms.geometry import flip_affine_lps_ras
from transforms.io.atomic import atomic_write

__all__ = [
    "PhantomVolume",
    "CSI2014_VERTEBRAE",
    "ISBI2015_LANDMARKS",
    "HAND_XRAY_LANDMARKS",
    "HAND_MRI_LANDMARKS",
    "SPLITS",
    "split_sizes",
    "prepare_output_dir",
    "write_nifti",
    "lps_affine_to_ras",
    "write_mha",
    "progress",
    "relative",
]

#: The 26 vertebra slots of the CSI 2014 centroid files (Payer's ``points_world_coordinates.csv``),
#: slot 0 highest: C1-C7, T1-T12, L1-L5, S1, S2 (Glocker et al. 2013 annotate C1 to S2). The median
#: centroid spacing per slot in the real file (17-20 mm cervical, 21-33 mm thoracic, 34-36 mm lumbar,
#: then 36 and 30 mm) and the posterior turn of slots 24-25 agree with this reading.
CSI2014_VERTEBRAE: tuple[str, ...] = tuple(csi2014.VERTEBRA_NAMES)

#: ISBI 2015 cephalometric landmarks, in the challenge's order (one definition, in :mod:`mlm.data.isbi2015`).
ISBI2015_LANDMARKS: tuple[str, ...] = tuple(isbi2015.LANDMARK_NAMES)

_DIGITS = ("thumb", "index", "middle", "ring", "little")

#: Payer's 37 hand X-ray landmarks (MICCAI 2016), named from their layout in ``setup/all.csv`` (a left hand,
#: thumb towards +x): 13 wrist points (radius, ulna, carpals; 0-12), the metacarpal bases of the little to the
#: index finger and of the thumb (13-17), then each digit's joints from proximal to tip (thumb: MCP, IP, tip).
HAND_XRAY_LANDMARKS: tuple[str, ...] = (
    *(f"wrist_{i:02d}" for i in range(13)),
    "mc_base_little",
    "mc_base_ring",
    "mc_base_middle",
    "mc_base_index",
    "mc_base_thumb",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    *(f"{d}_{j}" for d in ("index", "middle", "ring", "little") for j in ("mcp", "pip", "dip", "tip")),
)

#: The 28 landmarks of the 3D MR-like hand phantom: radius and ulna styloids, 6 carpal points, then for each
#: digit (thumb to little) the metacarpal base and the joints up to the tip (thumb: CMC, MCP, IP, tip).
HAND_MRI_LANDMARKS: tuple[str, ...] = (
    "radius_styloid",
    "ulna_styloid",
    *(f"carpal_{i}" for i in range(6)),
    "thumb_cmc",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    *(f"{d}_{j}" for d in ("index", "middle", "ring", "little") for j in ("mcp", "pip", "dip", "tip")),
)

#: datalist split names, in order.
SPLITS: tuple[str, ...] = ("training", "validation", "test")

T = TypeVar("T")


def split_sizes(num_images: int, num_validation: int | None = None, num_test: int | None = None) -> dict[str, int]:
    """Images per split: by default 2/3 training, 1/6 validation, 1/6 test (at least one each when possible)."""
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    default = max(1, round(num_images / 6)) if num_images >= 3 else 0
    nv = default if num_validation is None else int(num_validation)
    nt = default if num_test is None else int(num_test)
    if nv + nt >= num_images:
        raise ValueError(f"{nv} validation + {nt} test images leave no training image out of {num_images}")
    return {"training": num_images - nv - nt, "validation": nv, "test": nt}


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Create ``out_dir``; refuse (``FileExistsError``) a non-empty folder unless ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder is not empty; pass overwrite=True (CLI: --overwrite) to write into it")
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class PhantomVolume:
    """A generated 3D volume on an axis-aligned grid with its landmarks (the base of the 3D phantoms).

    Attributes:
        image: ``(X, Y, Z)`` int16, indexed like the NIfTI array (LPS axes, ITK identity direction).
        spacing: ``(3,)`` mm.
        origin: ``(3,)`` LPS mm of voxel ``(0, 0, 0)``.
        landmarks: ``(N, 3)`` LPS mm; NaN rows for landmarks outside the field of view.
    """

    image: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray
    landmarks: np.ndarray

    @property
    def landmarks_voxel(self) -> np.ndarray:
        """``(N, 3)`` landmarks in voxel coordinates of :attr:`image` (NaN rows kept)."""
        return (self.landmarks - self.origin) / self.spacing

    @property
    def affine_ras(self) -> np.ndarray:
        """``(4, 4)`` voxel -> RAS mm affine, as stored in the NIfTI file and loaded by MONAI."""
        return lps_affine_to_ras(self.spacing, self.origin)


def lps_affine_to_ras(spacing: Sequence[float], origin_lps: Sequence[float]) -> np.ndarray:
    """NIfTI (RAS) affine of an axis-aligned ITK image with identity direction (LPS), given spacing and origin."""
    aff = np.diag([*spacing, 1.0]).astype(np.float64)
    aff[:3, 3] = origin_lps
    return flip_affine_lps_ras(aff)


def write_nifti(
    path: str | os.PathLike, array: np.ndarray, spacing: Sequence[float], origin_lps: Sequence[float]
) -> Path:
    """Write a 3D array indexed ``[i, j, k]`` (x, y, z) as NIfTI, atomically.

    The image has ITK identity direction: voxel ``(i, j, k)`` sits at LPS mm ``origin_lps + spacing * (i, j, k)``,
    i.e. the stored RAS affine is ``diag(-1, -1, 1) @ [diag(spacing) | origin_lps]`` (as SimpleITK writes it).
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), lps_affine_to_ras(spacing, origin_lps))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    return atomic_write(path, lambda tmp: nib.save(img, str(tmp)))


def write_mha(path: str | os.PathLike, array: np.ndarray, spacing: Sequence[float], compress: bool = True) -> Path:
    """Write an array indexed ``[x, y(, z)]`` as MetaImage (``.mha``) with ``spacing`` mm, atomically."""
    import SimpleITK as sitk

    arr = np.asarray(array)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.T))  # SimpleITK arrays are [z, y, x]
    img.SetSpacing([float(s) for s in spacing])
    return atomic_write(path, lambda tmp: sitk.WriteImage(img, str(tmp), compress))


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", enable: bool = True) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar when tqdm is installed and ``enable``; else return it unchanged."""
    if enable:
        try:
            from tqdm.auto import tqdm

            return iter(tqdm(iterable, total=total, desc=desc, unit="img"))
        except ImportError:
            pass
    return iter(iterable)


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (for datalists)."""
    return Path(os.path.relpath(path, root)).as_posix()
