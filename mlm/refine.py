"""Coarse-to-fine refinement: re-locate each landmark of a global stage in a high-resolution patch around it.

A global model at about 1 mm per pixel cannot get far below a pixel of error; training it at full resolution is out
of reach on a CPU. The refinement stage crops one patch per landmark at high resolution (e.g. 64x64 at 0.25 mm in
2D) centred at the global prediction, runs a heatmap network on the patches (any of the project's networks with
``N`` output channels, or 1 shared channel), decodes channel ``k`` of patch ``k`` sub-pixel and maps it back to
world mm through the patch's exact affine. It works after any global model: it only needs the image and world
points. Training uses :class:`transforms.patches.RandLandmarkPatchesd` (patches centred at the truth plus an offset
drawn from the global stage's error distribution) with ``SCNHeatmapLoss(mask_missing=True)``; the patch geometry
(``patch_size``, ``spacing``, interpolation, padding, anti-aliasing) and the intensity normalisation must be the same
in training and here.

Acceptance: a refined estimate is rejected when its heatmap peak is below ``min_peak`` or it lies within
``border_margin`` voxels of the patch's outermost voxel centres (the landmark is probably outside the patch: the
global error was larger than the patch). A rejected landmark keeps the estimate its patch was centred on
(``on_reject="keep"``: the global prediction at the first iteration) or becomes missing (``"missing"``), and is not
iterated further. With ``num_iterations > 1`` each accepted estimate is refined again in a patch re-centred on it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from torch import nn

from mlm.engines import PrepareLandmarkBatch, _names
from mlm.heatmaps import decode_heatmaps, voxel_to_world, world_to_voxel
from transforms.geometry import image_affine, spatial_affine
from transforms.patches import LandmarkPatches, isotropic_offsets

__all__ = [
    "Refinement",
    "PatchRefiner",
    "PatchRefinerd",
    "PrepareJitteredCenters",
    "REJECT_MODES",
    "offset_sigma_from_errors",
]

#: what happens to a landmark whose refined estimate is rejected.
REJECT_MODES = ("keep", "missing")


@dataclass
class Refinement:
    """The result of refining one image's landmarks.

    Attributes:
        points: ``(N, D)`` float64 refined world coordinates (mm, the image affine's frame); NaN where the input
            was NaN (or rejected with ``on_reject="missing"``).
        values: ``(N,)`` float64 heatmap peak of the last accepted refinement (NaN where none was accepted).
        accepted: ``(N,)`` int64 number of accepted iterations (0: the input estimate was kept).
    """

    points: torch.Tensor
    values: torch.Tensor
    accepted: torch.Tensor


def _plain(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().as_subclass(torch.Tensor).cpu()
    return torch.as_tensor(np.asarray(x))


def offset_sigma_from_errors(errors, per_landmark: bool = True) -> torch.Tensor:
    """The ``offset_sigma`` (mm) of :class:`transforms.patches.RandLandmarkPatches` that matches a global stage's
    errors: the root mean square of the per-axis errors (the ML estimate of an isotropic Gaussian's sigma).

    Args:
        errors: ``(M, N, D)`` prediction minus truth, mm, of M validation images (NaN rows ignored).
        per_landmark: one value per landmark ``(N,)``, or one for all (a 0-dim tensor).
    """
    e = _plain(errors).to(torch.float64)
    if e.ndim != 3:
        raise ValueError(f"offset_sigma_from_errors: errors must be (M, N, D) mm, got {tuple(e.shape)}.")
    sq = e**2
    dims = (0, 2) if per_landmark else (0, 1, 2)
    return torch.sqrt(torch.nanmean(sq, dim=dims))


class PatchRefiner:
    """Refine world landmark estimates in high-resolution patches (an inferer-like callable).

    Args:
        patch_size: ``P``, voxels per axis (the training patches' size; every axis a multiple of the network's
            ``2 ** (num_levels - 1)``).
        spacing: patch voxel size, mm (the training patches' spacing).
        num_iterations: refinement passes, each re-centred on the previous estimate.
        batch_size: patches per network forward.
        method: heatmap decoder of :func:`mlm.heatmaps.decode_heatmaps` (``"dark"`` default).
        min_peak: reject estimates whose heatmap peak is below this (network output units); None: no threshold.
        border_margin: reject estimates within this many voxels of the patch's outermost voxel centres
            (None: accept every position).
        on_reject: ``"keep"`` the estimate the patch was centred on, or ``"missing"`` (NaN).
        patch_transform: applied to each batch of patches ``(K, C, *P)`` before the network (e.g.
            ``transforms.intensity.NormalizeXRay()`` when the image is not normalised yet); None for none. It sees
            all patches at once: use element-wise transforms (statistics over the batch would mix the patches).
        mode, padding_mode, pad_value, anti_aliasing, axes: patch resampling, see
            :class:`transforms.patches.LandmarkPatches`.

    Call with ``(inputs, network, centers)``: ``inputs`` the image ``(C, *S)`` or a batch ``(B, C, *S)`` (a
    ``MetaTensor`` with the voxel-to-world affine(s)), ``network`` mapping ``(K, C, *P)`` to ``(K, N, *P)`` (or
    ``(K, 1, *P)``: one channel shared by all landmarks), ``centers`` ``(N, D)`` or ``(B, N, D)`` world mm (NaN rows
    skipped). Returns the refined world points, float64, of the shape of ``centers``. :meth:`refine` also gives the
    peak values and which estimates were accepted. The network runs in eval mode under ``torch.no_grad`` (its mode
    is restored afterwards), on the device of its parameters.
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        spacing: float | Sequence[float],
        num_iterations: int = 1,
        batch_size: int = 32,
        method: str = "dark",
        min_peak: float | None = None,
        border_margin: float | None = 1.0,
        on_reject: str = "keep",
        patch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        mode: str = "bilinear",
        padding_mode: str = "border",
        pad_value: float = 0.0,
        anti_aliasing: bool = True,
        axes: str = "image",
    ) -> None:
        if num_iterations < 1:
            raise ValueError(f"PatchRefiner: num_iterations must be >= 1, got {num_iterations}.")
        if batch_size < 1:
            raise ValueError(f"PatchRefiner: batch_size must be >= 1, got {batch_size}.")
        if on_reject not in REJECT_MODES:
            raise ValueError(f"PatchRefiner: on_reject must be one of {REJECT_MODES}, got {on_reject!r}.")
        if border_margin is not None and border_margin < 0:
            raise ValueError(f"PatchRefiner: border_margin must be >= 0 voxels or None, got {border_margin}.")
        self.patcher = LandmarkPatches(patch_size, spacing, mode, padding_mode, pad_value, anti_aliasing, axes)
        self.num_iterations = int(num_iterations)
        self.batch_size = int(batch_size)
        self.method = method
        self.min_peak = None if min_peak is None else float(min_peak)
        self.border_margin = None if border_margin is None else float(border_margin)
        self.on_reject = on_reject
        self.patch_transform = patch_transform

    @property
    def patch_size(self) -> tuple[int, ...]:
        return self.patcher.patch_size

    def heatmaps(self, patches: torch.Tensor, network: nn.Module, channels: torch.Tensor) -> torch.Tensor:
        """Channel ``channels[k]`` of the network's output on patch ``k``: ``(K, *P)`` float32 on the CPU.

        ``patches`` ``(K, C, *P)``; a network with one output channel uses it for every patch.
        """
        params = next(iter(network.parameters()), None)
        device = params.device if params is not None else torch.device("cpu")
        x = patches.as_subclass(torch.Tensor) if isinstance(patches, MetaTensor) else patches
        if self.patch_transform is not None:
            x = _plain(self.patch_transform(x))
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size].to(device=device, dtype=torch.float32)
            pred = network(chunk)
            pred = pred.as_subclass(torch.Tensor) if isinstance(pred, MetaTensor) else pred
            if pred.ndim != x.ndim or tuple(pred.shape[2:]) != tuple(x.shape[2:]):
                raise ValueError(
                    f"PatchRefiner: the network maps patches {tuple(chunk.shape)} to {tuple(pred.shape)}; it must give "
                    f"heatmaps of the patch size, (K, N, {', '.join(str(p) for p in x.shape[2:])})."
                )
            ch = channels[start : start + self.batch_size].to(pred.device)
            if pred.shape[1] == 1:
                ch = torch.zeros_like(ch)
            elif int(ch.max()) >= pred.shape[1]:
                raise ValueError(
                    f"PatchRefiner: landmark {int(ch.max())} but the network has {pred.shape[1]} output channels."
                )
            out.append(pred[torch.arange(pred.shape[0], device=pred.device), ch].float().cpu())
        return torch.cat(out) if out else torch.zeros((0, *x.shape[2:]))

    def refine(self, image: torch.Tensor, network: nn.Module, centers: Any) -> Refinement:
        """Refine one image's estimates ``centers`` ``(N, D)`` (world mm); see the class docstring."""
        points = _plain(centers).to(torch.float64).clone()
        dims = self.patcher.spatial_dims
        if points.ndim != 2 or points.shape[1] != dims:
            raise ValueError(f"PatchRefiner: centers must be (N, {dims}) world mm, got {tuple(points.shape)}.")
        num = points.shape[0]
        values = torch.full((num,), torch.nan, dtype=torch.float64)
        accepted = torch.zeros(num, dtype=torch.int64)
        active = torch.isfinite(points).all(dim=1)
        size = torch.as_tensor(self.patch_size, dtype=torch.float64)
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad():
                for _ in range(self.num_iterations):
                    idx = active.nonzero().flatten()
                    if idx.numel() == 0:
                        break
                    patches = self.patcher(image, points[idx])
                    affines = torch.as_tensor(spatial_affine(patches.affine, dims))  # (K, D+1, D+1)
                    maps = self.heatmaps(patches, network, idx)
                    coords, peak = decode_heatmaps(maps[:, None], method=self.method)
                    coords, peak = coords[:, 0], peak[:, 0]
                    ok = torch.isfinite(coords).all(dim=1) & torch.isfinite(peak)
                    if self.min_peak is not None:
                        ok &= peak >= self.min_peak
                    if self.border_margin is not None:
                        m = self.border_margin
                        ok &= ((coords >= m) & (coords <= size - 1.0 - m)).all(dim=1)
                    world = voxel_to_world(coords[:, None].nan_to_num(), affines)[:, 0]
                    good, bad = idx[ok], idx[~ok]
                    points[good] = world[ok]
                    values[good] = peak[ok]
                    accepted[good] += 1
                    if self.on_reject == "missing":
                        points[bad] = torch.nan
                    active[bad] = False
        finally:
            network.train(was_training)
        return Refinement(points, values, accepted)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, centers: Any) -> torch.Tensor:
        dims = self.patcher.spatial_dims
        c = _plain(centers)
        if inputs.ndim == dims + 1:
            return self.refine(inputs, network, c).points
        if inputs.ndim != dims + 2 or c.ndim != 3 or c.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"PatchRefiner: inputs (C, *S) with centers (N, D), or (B, C, *S) with (B, N, D); got "
                f"{tuple(inputs.shape)} and {tuple(c.shape)}."
            )
        items = [inputs[b] for b in range(inputs.shape[0])]
        if isinstance(inputs, MetaTensor):  # one affine per item
            affines = inputs.affine if inputs.affine.ndim == 3 else inputs.affine[None].expand(inputs.shape[0], -1, -1)
            items = [MetaTensor(inputs[b].as_tensor(), affine=affines[b]) for b in range(inputs.shape[0])]
        return torch.stack([self.refine(img, network, c[b]).points for b, img in enumerate(items)])


class PatchRefinerd(MapTransform):
    """Post-transform: refine the world landmarks ``(N, D)`` under ``keys`` in patches of the image under ``image_key``.

    Use it after a global stage's ``HeatmapsToLandmarksd`` (which leaves world mm under ``"pred"``) in an evaluation
    or inference ``postprocessing``. The image under ``image_key`` is the one to crop the patches from, typically the
    full-resolution image with the refinement's intensity normalisation (its affine maps its voxels to the same world
    frame as the global stage's image; a second image key, since the global stage's image is the resampled one).

    Written keys, for each key: ``key`` the refined world mm (float64), ``f"{key}_{global_key_postfix}"`` the
    estimates before refinement, ``f"{key}_{values_key_postfix}"`` the refined heatmap peaks ``(N,)`` (NaN where
    the estimate was kept), ``f"{key}_{accepted_key_postfix}"`` ``(N,)`` accepted iterations (0 = kept), and, when
    ``f"{key}_{voxel_key_postfix}"`` exists (``HeatmapsToLandmarksd``), the refined points in voxel coordinates of
    the image under ``voxel_ref_key``.

    Args:
        keys: keys of world landmarks ``(N, D)``, default ``"pred"``.
        image_key: key of the image ``(C, *S)`` to refine in.
        network: the refinement network.
        refiner: a :class:`PatchRefiner` (its patch geometry must be the training one).
        global_key_postfix, values_key_postfix, accepted_key_postfix: output key postfixes.
        voxel_key_postfix: postfix of the voxel coordinates to update (None: leave them).
        voxel_ref_key: key of the image whose voxel grid those coordinates are in (the global stage's ``ref_key``).
        allow_missing_keys: don't raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        image_key: str = "image",
        network: nn.Module | None = None,
        refiner: PatchRefiner | None = None,
        global_key_postfix: str = "global",
        values_key_postfix: str = "refine_values",
        accepted_key_postfix: str = "refine_accepted",
        voxel_key_postfix: str | None = "voxel",
        voxel_ref_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if network is None or refiner is None:
            raise ValueError("PatchRefinerd needs a refinement network and a PatchRefiner.")
        self.image_key = image_key
        self.network = network
        self.refiner = refiner
        self.global_key_postfix = global_key_postfix
        self.values_key_postfix = values_key_postfix
        self.accepted_key_postfix = accepted_key_postfix
        self.voxel_key_postfix = voxel_key_postfix
        self.voxel_ref_key = voxel_ref_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d:
            raise KeyError(f"PatchRefinerd: image key {self.image_key!r} not in the data (keys {list(d)}).")
        image = d[self.image_key]
        for key in self.key_iterator(d):
            before = _plain(d[key]).to(torch.float64)
            result = self.refiner.refine(image, self.network, before)
            d[f"{key}_{self.global_key_postfix}"] = before
            d[f"{key}_{self.values_key_postfix}"] = result.values
            d[f"{key}_{self.accepted_key_postfix}"] = result.accepted
            d[key] = result.points
            voxel_key = f"{key}_{self.voxel_key_postfix}" if self.voxel_key_postfix else None
            if voxel_key in d and self.voxel_ref_key in d:
                ref = d[self.voxel_ref_key]
                d[voxel_key] = world_to_voxel(result.points, image_affine(ref, result.points.shape[-1]))
        return d


class PrepareJitteredCenters(PrepareLandmarkBatch):
    """``prepare_batch`` of the refinement stage's validation: the image, the ground truth, and as the
    :class:`PatchRefiner`'s ``centers`` the ground truth (world mm) plus an offset drawn as in training
    (:class:`transforms.patches.RandLandmarkPatches`: ``offset_sigma``, ``offset_df``, ``max_offset``).

    The offsets of an image depend only on ``seed`` and its file name, so every validation of a run (and of any
    run) sees the same starting points: the validation MRE measures the refinement alone, without a global model.
    Missing landmarks (NaN) stay missing.

    Args:
        offset_sigma: per-axis scale of the offset, mm (a float, or N floats: one per landmark).
        offset_df: Student t degrees of freedom, None for Gaussian.
        max_offset: largest offset length, mm (None: no clipping).
        seed: base seed of the offsets.
        image_key, landmarks_key, num_landmarks: see :class:`mlm.engines.PrepareLandmarkBatch`.

    Returns (from ``__call__``): ``(image, landmarks, (centers,), {})`` with ``centers`` ``(B, N, D)`` float64.
    """

    def __init__(
        self,
        offset_sigma: float | Sequence[float] = 2.0,
        offset_df: float | None = None,
        max_offset: float | None = None,
        seed: int = 0,
        image_key: str = "image",
        landmarks_key: str = "landmarks",
        num_landmarks: int | None = None,
    ) -> None:
        super().__init__(image_key, landmarks_key, num_landmarks)
        self.offset_sigma = np.atleast_1d(np.asarray(offset_sigma, dtype=np.float64))
        self.offset_df = offset_df
        self.max_offset = max_offset
        self.seed = int(seed)

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs: Any):
        image, landmarks = super().__call__(batchdata, device, non_blocking, **kwargs)
        if landmarks is None:
            raise ValueError("PrepareJitteredCenters: the batch has no ground-truth landmarks to start from.")
        dims = image.ndim - 2
        names = _names(image)
        affines = image.affine if isinstance(image, MetaTensor) else torch.eye(dims + 1, dtype=torch.float64)
        affines = torch.as_tensor(affines, dtype=torch.float64).cpu()
        affines = affines if affines.ndim == 3 else affines[None].expand(image.shape[0], -1, -1)
        centers = []
        for b in range(image.shape[0]):
            world = voxel_to_world(_plain(landmarks[b]).to(torch.float64), spatial_affine(affines[b], dims))
            name = names[b] if len(names) == image.shape[0] else f"{b}"
            rng = np.random.RandomState((self.seed + zlib.crc32(name.encode("utf-8"))) % 2**32)
            sigma = self.offset_sigma if self.offset_sigma.size == 1 else self.offset_sigma[: world.shape[0]]
            offsets = isotropic_offsets(rng, world.shape[0], dims, sigma, self.offset_df, self.max_offset)
            centers.append(torch.as_tensor(world) + torch.as_tensor(offsets))
        return image, landmarks, (torch.stack(centers),), {}
