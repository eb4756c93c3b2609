"""Point distribution model (mean + PCA modes) of landmark configurations, fitted with missing landmarks.

A :class:`PointDistributionModel` (Cootes et al., 1995) describes ``(N, D)`` landmark configurations as
``mean + sum_k b_k * std_k * mode_k``. The phantoms sample landmark positions from models fitted to the
real annotations in ``../shared/data`` (see ``scripts/fit_shape_models.py``); the package ships only the
fitted numbers as small JSON files beside this module.

Configurations may have missing landmarks (NaN rows, e.g. partial fields of view of the CSI 2014 spine
scans). :func:`fit_point_distribution_model` handles them by iterative PCA imputation, an EM-like scheme:
align each configuration to the current mean on the landmarks it shares with it, fill its missing
landmarks with the current model's reconstruction, re-estimate mean and modes from the filled data, and
repeat. Only observed coordinates constrain each configuration's mode coefficients.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from transforms.io.atomic import atomic_write

__all__ = ["PointDistributionModel", "fit_point_distribution_model", "align_configurations", "load_shape_model"]

Alignment = Literal["none", "translation", "similarity"]


@dataclass
class PointDistributionModel:
    """Mean landmark configuration plus principal modes of variation.

    Args:
        mean: ``(N, D)`` mean configuration, in ``units``.
        modes: ``(K, N * D)`` orthonormal principal directions (rows), flattened row-major like ``mean``.
        std: ``(K,)`` standard deviation of the coefficient of each mode, in ``units``.
        names: ``N`` landmark names.
        units: unit of the coordinates (e.g. ``"mm"``, ``"px"``).
        coordinate_system: what the axes mean (e.g. ``"LPS"`` or ``"image"``).
        alignment: how the training configurations were aligned before the PCA.
        info: free-form provenance and statistics (source files, sample counts, residuals...).
    """

    mean: np.ndarray
    modes: np.ndarray
    std: np.ndarray
    names: list[str]
    units: str = "mm"
    coordinate_system: str = "LPS"
    alignment: str = "translation"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.modes = np.asarray(self.modes, dtype=np.float64).reshape(-1, self.mean.size)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if self.mean.ndim != 2:
            raise ValueError(f"mean must be (N, D), got shape {self.mean.shape}")
        if self.modes.shape[0] != self.std.shape[0]:
            raise ValueError(f"{self.modes.shape[0]} modes but {self.std.shape[0]} standard deviations")
        if len(self.names) != self.mean.shape[0]:
            raise ValueError(f"{len(self.names)} names for {self.mean.shape[0]} landmarks")

    @property
    def num_landmarks(self) -> int:
        return int(self.mean.shape[0])

    @property
    def spatial_dims(self) -> int:
        return int(self.mean.shape[1])

    @property
    def num_modes(self) -> int:
        return int(self.std.shape[0])

    def reconstruct(self, coefficients: np.ndarray) -> np.ndarray:
        """Configuration ``(N, D)`` for standardised mode coefficients ``b`` of shape ``(K,)`` (or fewer)."""
        b = np.zeros(self.num_modes)
        c = np.asarray(coefficients, dtype=np.float64).reshape(-1)[: self.num_modes]
        b[: c.size] = c
        return self.mean + ((b * self.std) @ self.modes).reshape(self.mean.shape)

    def sample(self, rng: np.random.Generator, scale: float = 1.0, clip: float = 2.5) -> np.ndarray:
        """Draw one configuration ``(N, D)``: standard normal coefficients times ``scale``, clipped to ``+-clip``."""
        b = np.clip(rng.standard_normal(self.num_modes) * scale, -clip, clip)
        return self.reconstruct(b)

    def to_dict(self) -> dict:
        return {
            "type": "PointDistributionModel",
            "names": list(self.names),
            "units": self.units,
            "coordinate_system": self.coordinate_system,
            "alignment": self.alignment,
            "mean": np.round(self.mean, 4).tolist(),
            "std": np.round(self.std, 5).tolist(),
            "modes": np.round(self.modes, 6).tolist(),
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict) -> PointDistributionModel:
        return cls(
            mean=np.asarray(d["mean"]),
            modes=np.asarray(d["modes"]),
            std=np.asarray(d["std"]),
            names=list(d["names"]),
            units=d.get("units", "mm"),
            coordinate_system=d.get("coordinate_system", "LPS"),
            alignment=d.get("alignment", "translation"),
            info=dict(d.get("info", {})),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as JSON, atomically (:func:`transforms.io.atomic_write`)."""
        atomic_write(path, json.dumps(self.to_dict(), indent=1) + "\n", make_parents=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PointDistributionModel:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"shape model file not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
            return cls.from_dict(d)
        except (json.JSONDecodeError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: not a valid point distribution model JSON ({e})") from e


def load_shape_model(name: str) -> PointDistributionModel:
    """Load a shipped model by file stem: ``"spine"``, ``"ceph"`` or ``"hand_xray"`` (``<name>_shape_model.json``)."""
    return PointDistributionModel.load(Path(__file__).resolve().parent / f"{name}_shape_model.json")


def _similarity(src: np.ndarray, dst: np.ndarray, allow_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src (M, D)`` onto ``dst (M, D)``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(d0.T @ s0)
    sign = np.ones(src.shape[1])
    sign[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = (u * sign) @ vt
    scale = float((sv * sign).sum() / max((s0**2).sum(), 1e-12)) if allow_scale else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def align_configurations(points: np.ndarray, reference: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Align each configuration of ``points (S, N, D)`` onto ``reference (N, D)`` using its observed rows only.

    ``"translation"`` matches the centroids of the shared landmarks, ``"similarity"`` adds rotation and
    uniform scale (Procrustes). NaN rows stay NaN.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    if alignment == "none":
        return out
    for s in range(out.shape[0]):
        ok = ~np.isnan(out[s]).any(-1)
        if not ok.any():
            continue
        if alignment == "translation" or ok.sum() <= out.shape[2]:
            out[s] += reference[ok].mean(0) - out[s][ok].mean(0)
        elif alignment == "similarity":
            scale, rot, t = _similarity(out[s][ok], reference[ok])
            out[s] = scale * out[s] @ rot.T + t
        else:
            raise ValueError(f"unknown alignment {alignment!r}: use 'none', 'translation' or 'similarity'")
    return out


def _chain_mean(points: np.ndarray) -> np.ndarray:
    """Complete initial mean from median offsets between consecutive landmarks (works with partial scans)."""
    n = points.shape[1]
    mean = np.zeros(points.shape[1:])
    for k in range(1, n):
        step = np.nanmedian(points[:, k] - points[:, k - 1], axis=0)
        mean[k] = mean[k - 1] + np.nan_to_num(step)
    return mean


def _posterior_reconstruction(
    aligned: np.ndarray,
    mask: np.ndarray,
    mean: np.ndarray,
    scaled_modes: np.ndarray,
    noise_var: float,
    dims: int,
    translation_free: bool,
) -> np.ndarray:
    """Reconstruction ``(S, N * D)`` of each configuration from its observed coordinates (probabilistic PCA E-step).

    ``b = (M_o M_o^T + noise_var I)^-1 M_o (x_o - mean_o)`` with ``M = modes * std``: the prior ``b ~ N(0, I)``
    keeps configurations with few observed landmarks from extrapolating wildly. With ``translation_free`` the
    observed part of each mode is centred first (the configurations were aligned by their observed centroid, so
    a mode's translation component is not observable), and the reconstruction keeps the observed centroid.
    """
    k = scaled_modes.shape[0]
    recon = np.tile(mean, (aligned.shape[0], 1))
    if k == 0:
        return recon
    for i in range(aligned.shape[0]):
        m = mask[i]
        mo = scaled_modes[:, m]
        if translation_free:
            mo = (mo.reshape(k, -1, dims) - mo.reshape(k, -1, dims).mean(1, keepdims=True)).reshape(k, -1)
        b = np.linalg.solve(mo @ mo.T + noise_var * np.eye(k), mo @ (aligned[i, m] - mean[m]))
        delta = (b @ scaled_modes).reshape(-1, dims)
        if translation_free:
            delta -= delta[m[::dims]].mean(0)
        recon[i] += delta.reshape(-1)
    return recon


def fit_point_distribution_model(
    points: np.ndarray,
    names: Sequence[str],
    num_modes: int = 5,
    alignment: Alignment = "translation",
    num_iterations: int = 30,
    units: str = "mm",
    coordinate_system: str = "LPS",
    min_observed: int = 2,
    info: dict | None = None,
) -> PointDistributionModel:
    """Fit a :class:`PointDistributionModel` to configurations with missing landmarks.

    Args:
        points: ``(S, N, D)`` configurations; a missing landmark is a NaN row.
        names: ``N`` landmark names.
        num_modes: number of PCA modes ``K`` kept.
        alignment: ``"none"``, ``"translation"`` or ``"similarity"`` (see :func:`align_configurations`).
        num_iterations: rounds of align / impute / PCA.
        units, coordinate_system: stored with the model.
        min_observed: configurations with fewer observed landmarks are ignored.
        info: extra provenance stored with the model.

    Returns:
        the model; ``info`` gains ``num_configurations``, ``fraction_observed`` and the RMS residual
        (observed coordinates only, in ``units``) of the ``K``-mode reconstruction.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3:
        raise ValueError(f"points must be (S, N, D), got shape {pts.shape}")
    observed = ~np.isnan(pts).any(-1)
    pts = pts[observed.sum(1) >= min_observed]
    observed = ~np.isnan(pts).any(-1)
    s, n, d = pts.shape
    complete = bool(observed.all())
    mean = pts.mean(0) if complete else _chain_mean(pts)
    modes = np.zeros((0, n * d))
    std = np.zeros(0)
    noise_var = 1.0
    mask = np.repeat(observed, d, axis=1)  # (S, N*D)
    filled = np.zeros((s, n * d))
    for _ in range(1 if complete and alignment == "none" else num_iterations):
        aligned = align_configurations(pts, mean, alignment).reshape(s, n * d)
        if complete:
            filled = aligned
        else:
            recon = _posterior_reconstruction(
                aligned, mask, mean.reshape(-1), modes * std[:, None], noise_var, d, alignment != "none"
            )
            noise_var = max(float(np.mean((aligned[mask] - recon[mask]) ** 2)), 1e-6)
            filled = np.where(mask, np.nan_to_num(aligned), recon)
        mean = filled.mean(0).reshape(n, d)
        _, sv, vt = np.linalg.svd(filled - mean.reshape(-1), full_matrices=False)
        modes = vt[:num_modes]
        std = sv[:num_modes] / np.sqrt(max(s - 1, 1))
    aligned = align_configurations(pts, mean, alignment).reshape(s, n * d)
    recon = _posterior_reconstruction(
        aligned,
        mask,
        mean.reshape(-1),
        modes * std[:, None],
        noise_var if not complete else 1e-6,
        d,
        alignment != "none",
    )
    rms = float(np.sqrt(np.mean((aligned[mask] - recon[mask]) ** 2)))
    meta = dict(info or {})
    meta.update(
        {
            "num_configurations": int(s),
            "fraction_observed": round(float(observed.mean()), 4),
            "rms_residual": round(rms, 4),
            "explained_std_total": round(float(np.sqrt((filled - filled.mean(0)).var(0).sum())), 4),
        }
    )
    return PointDistributionModel(
        mean=mean,
        modes=modes,
        std=std,
        names=list(names),
        units=units,
        coordinate_system=coordinate_system,
        alignment=alignment,
        info=meta,
    )
