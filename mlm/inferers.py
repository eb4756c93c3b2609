"""Sliding-window inference with patches merged by voxel-wise maximum (Payer's ``ImageTiler``), on MONAI.

MONAI's ``SlidingWindowInferer`` only averages overlapping windows. For heatmaps the maximum is the right merge:
a landmark seen near the border of one window and in the centre of another keeps its strongest response.
:class:`MaxMerger` is a ``monai.inferers.Merger`` usable with ``monai.inferers.PatchInferer``;
:class:`SlidingWindowPositionSplitter` is a ``monai.inferers.Splitter`` whose last window per axis is aligned
to the end of the image (as Payer's ``ImageTiler`` and MONAI's ``sliding_window_inference`` do, unlike
``SlidingWindowSplitter``, which pads the end); :class:`MaxSlidingWindowInferer` wires both into a
``monai.inferers.Inferer`` that keeps the input's MetaTensor metadata.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer, Merger, PatchInferer, Splitter
from monai.utils import ensure_tuple_rep, optional_import

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["MaxMerger", "SlidingWindowPositionSplitter", "MaxSlidingWindowInferer", "window_starts"]


class MaxMerger(Merger):
    """Merge patches by voxel-wise maximum; voxels that no patch covered get ``fill_value``.

    The accumulator starts at ``-inf``; ``aggregate`` takes ``torch.maximum`` in place over the patch's region (out of
    place when the patch requires grad, so that an attack can differentiate through the merge).

    Args:
        merged_shape: shape ``(B, N, *S_padded)`` of the accumulator.
        cropped_shape: shape ``(B, N, *S)`` of the final output (a leading crop of the accumulator);
            defaults to ``merged_shape``.
        value_dtype: dtype of the accumulator and result.
        device: device of the accumulator and result.
        fill_value: value of voxels covered by no patch (Payer's ``ImageTiler`` default: 0).
    """

    def __init__(
        self,
        merged_shape: Sequence[int],
        cropped_shape: Sequence[int] | None = None,
        value_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        fill_value: float = 0.0,
    ) -> None:
        super().__init__(merged_shape=merged_shape, cropped_shape=cropped_shape, device=device)
        if not self.merged_shape:
            raise ValueError(f"`merged_shape` must be provided for `MaxMerger`, got {self.merged_shape}.")
        self.value_dtype = value_dtype
        self.fill_value = float(fill_value)
        self.values = torch.full(self.merged_shape, -torch.inf, dtype=value_dtype, device=device)
        self.covered = torch.zeros(self.merged_shape[2:], dtype=torch.bool, device=device)

    def aggregate(self, values: torch.Tensor, location: Sequence[int]) -> None:
        """Take the maximum of ``values`` ``(B, N, *P)`` and the accumulator at ``location`` (top-left corner, voxels)."""
        if self.is_finalized:
            raise ValueError("`MaxMerger` is already finalized; instantiate a new one to aggregate.")
        if values.ndim != len(self.merged_shape) or len(location) != values.ndim - 2:
            raise ValueError(
                f"MaxMerger.aggregate: expected values with {len(self.merged_shape)} dims and a location with "
                f"{len(self.merged_shape) - 2} entries, got shape {tuple(values.shape)} and location {tuple(location)}."
            )
        spatial = tuple(slice(int(loc), int(loc) + int(size)) for loc, size in zip(location, values.shape[2:]))
        index = (slice(None), slice(None)) + spatial
        region = self.values[index]
        values = values.to(device=region.device, dtype=region.dtype)
        if values.requires_grad:  # an attack differentiates through the merge (LandmarkAttackHandler, use_inferer)
            self.values[index] = torch.maximum(region.clone(), values)
        else:
            torch.maximum(region, values, out=region)
        self.covered[spatial] = True

    def finalize(self) -> torch.Tensor:
        """Fill uncovered voxels with ``fill_value``, crop to ``cropped_shape`` and return ``(B, N, *S)``."""
        if not self.is_finalized:
            if not bool(self.covered.all()):
                self.values.masked_fill_(~self.covered, self.fill_value)
            self.values = self.values[tuple(slice(0, end) for end in self.cropped_shape)]
            self.is_finalized = True
        return self.values

    def get_output(self) -> torch.Tensor:
        """The merged output (finalizes first)."""
        return self.finalize()

    def get_values(self) -> torch.Tensor:
        """The accumulator (``-inf`` where nothing was aggregated yet) or, once finalized, the result."""
        return self.values


def window_starts(size: int, patch: int, step: int, align_last: bool = True) -> list[int]:
    """Start indices of sliding windows along one axis.

    Windows start at ``0, step, 2 * step, ...`` until one reaches the end. With ``align_last`` the last window is
    moved back to end exactly at ``size`` (Payer's ``ImageTiler``, MONAI's ``dense_patch_slices``); without it the
    last window may overhang and the caller pads the end. ``size < patch`` gives ``[0]`` (the caller pads).
    """
    if patch < 1 or step < 1:
        raise ValueError(f"window size and step must be positive, got patch={patch}, step={step}.")
    starts = [0]
    while starts[-1] + patch < size:
        starts.append(starts[-1] + step)
    if align_last and size >= patch:
        starts[-1] = min(starts[-1], size - patch)
        starts = sorted(set(starts))
    return starts


class SlidingWindowPositionSplitter(Splitter):
    """Split ``(B, C, *S)`` into windows of ``patch_size`` every ``step`` voxels, last window aligned to the end.

    Axes shorter than the window (and, with ``align_last=False``, axes whose windows overhang) are padded at the
    end with ``pad_mode``/``pad_value``; ``get_padded_shape`` reports the padded shape so that ``PatchInferer``
    crops the merged output back to ``S``.

    Args:
        patch_size: window size per spatial axis (voxels); an int is repeated.
        step: window step per axis (voxels); an int is repeated.
        pad_mode: ``torch.nn.functional.pad`` mode for the end padding.
        pad_value: value for ``pad_mode="constant"``.
        align_last: align the last window of each axis to the end of the image.
        device: device the patches are moved to (``None``: unchanged).
        progress: show a tqdm progress bar over the windows.
    """

    def __init__(
        self,
        patch_size: Sequence[int] | int,
        step: Sequence[int] | int,
        pad_mode: str = "constant",
        pad_value: float = 0.0,
        align_last: bool = True,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(patch_size=patch_size, device=device)
        self.step = step
        self.pad_mode = pad_mode
        self.pad_value = pad_value
        self.align_last = align_last
        self.progress = progress

    def _geometry(self, spatial_shape: Sequence[int]) -> tuple[tuple[int, ...], list[list[int]], tuple[int, ...]]:
        ndim = len(spatial_shape)
        patch = tuple(int(p) for p in ensure_tuple_rep(self.patch_size, ndim))
        step = tuple(int(s) for s in ensure_tuple_rep(self.step, ndim))
        starts = [window_starts(int(sz), p, s, self.align_last) for sz, p, s in zip(spatial_shape, patch, step)]
        padded = tuple(max(int(sz), st[-1] + p) for sz, st, p in zip(spatial_shape, starts, patch))
        return patch, starts, padded

    def get_input_shape(self, inputs: Any) -> tuple:
        """Spatial shape ``S`` of ``inputs`` ``(B, C, *S)``."""
        return tuple(inputs.shape[2:])

    def get_padded_shape(self, inputs: Any) -> tuple:
        """Spatial shape covered by the windows (``S`` padded at the end where needed)."""
        return self._geometry(self.get_input_shape(inputs))[2]

    def num_windows(self, inputs: Any) -> int:
        """Number of windows ``inputs`` is split into."""
        _, starts, _ = self._geometry(self.get_input_shape(inputs))
        n = 1
        for st in starts:
            n *= len(st)
        return n

    def __call__(self, inputs: Any) -> Iterator[tuple[torch.Tensor, Sequence[int]]]:
        """Yield ``(patch (B, C, *patch_size), location)`` pairs; ``location`` is the window's first voxel."""
        if not isinstance(inputs, torch.Tensor):
            raise ValueError(f"The input should be a tensor (B, C, *S), got {type(inputs)}.")
        spatial_shape = self.get_input_shape(inputs)
        patch, starts, padded = self._geometry(spatial_shape)
        pad = []
        for sz, ps in zip(reversed(spatial_shape), reversed(padded)):
            pad += [0, ps - sz]
        if any(pad):
            if self.pad_mode == "constant":
                inputs = F.pad(inputs, pad, mode="constant", value=self.pad_value)
            else:
                inputs = F.pad(inputs, pad, mode=self.pad_mode)
        grid = torch.cartesian_prod(*(torch.tensor(s) for s in starts)).reshape(-1, len(starts)).tolist()
        iterator = tqdm(grid) if self.progress and has_tqdm else grid
        for location in iterator:
            slices = (slice(None), slice(None)) + tuple(slice(loc, loc + p) for loc, p in zip(location, patch))
            window = inputs[slices]
            if self.device is not None:
                window = window.to(self.device)
            yield window, tuple(location)


class MaxSlidingWindowInferer(Inferer):
    """Sliding-window inference whose overlapping windows are merged by voxel-wise maximum.

    Built from ``monai.inferers.PatchInferer`` + :class:`SlidingWindowPositionSplitter` + :class:`MaxMerger`.
    Input ``(B, C, *S)`` Tensor or MetaTensor -> output ``(B, N, *S)`` (the network's channels); a MetaTensor
    input's metadata (affine, filename, ...) is copied to the output, which ``PatchInferer`` alone drops.
    Windows per axis start every ``step`` voxels and the last one is aligned to the end of the image
    (``align_last``), exactly MONAI's ``SlidingWindowInferer`` windows for the same ``roi_size``/interval.
    Axes shorter than ``roi_size`` are padded at the end and the output cropped back, so the result is exact
    for networks that need the full window size. Call it under ``torch.no_grad()`` / ``eval()`` as usual.
    The padding never reaches the output (:class:`MaxMerger` crops the merged maps to the input's shape), but the
    input may itself be padded (the bundles pad x/y to the window): a landmark whose maximum lies in padding is
    outside the original image, and :class:`transforms.post.HeatmapsToLandmarksd` marks it missing (NaN) and logs it.

    Spine CT (Payer): ``MaxSlidingWindowInferer(roi_size=(96, 96, 192), step=(96, 96, 64))``.

    Args:
        roi_size: window size per spatial axis (voxels); an int is repeated.
        overlap: fraction of overlap between windows (MONAI convention: step ``int(roi * (1 - overlap))``);
            used when ``step`` is None; both None -> 0.25 (MONAI's default).
        step: window step per axis (voxels); exclusive with ``overlap``.
        pad_mode: padding of axes shorter than the window (``torch.nn.functional.pad`` mode).
        pad_value: value for ``pad_mode="constant"``.
        align_last: align the last window to the end (True) or pad the end (False, ``SlidingWindowSplitter``-like).
        batch_size: windows per network call.
        progress: tqdm progress bar over the windows.
        fill_value: output value where no window reached (only possible with ``step > roi_size``).
        device: device of the merged output (default: the input's device).
        value_dtype: dtype of the merged output.
        sw_device: device the windows are moved to before calling the network (default: unchanged).
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        overlap: Sequence[float] | float | None = None,
        step: Sequence[int] | int | None = None,
        pad_mode: str = "constant",
        pad_value: float = 0.0,
        align_last: bool = True,
        batch_size: int = 1,
        progress: bool = False,
        fill_value: float = 0.0,
        device: torch.device | str | None = None,
        value_dtype: torch.dtype = torch.float32,
        sw_device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if overlap is not None and step is not None:
            raise ValueError("MaxSlidingWindowInferer: give either `overlap` or `step`, not both.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.roi_size = roi_size
        self.overlap = 0.25 if overlap is None and step is None else overlap
        self.step = step
        self.pad_mode = pad_mode
        self.pad_value = pad_value
        self.align_last = align_last
        self.batch_size = batch_size
        self.progress = progress
        self.fill_value = fill_value
        self.device = device
        self.value_dtype = value_dtype
        self.sw_device = sw_device

    def steps(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Window step per axis (voxels) for an image of ``spatial_shape``."""
        ndim = len(spatial_shape)
        roi = tuple(int(r) for r in ensure_tuple_rep(self.roi_size, ndim))
        if self.step is not None:
            steps = tuple(int(s) for s in ensure_tuple_rep(self.step, ndim))
        else:
            overlap = ensure_tuple_rep(self.overlap, ndim)
            if any(not 0.0 <= float(o) < 1.0 for o in overlap):
                raise ValueError(f"overlap must be in [0, 1), got {self.overlap}.")
            steps = tuple(max(int(r * (1.0 - float(o))), 1) for r, o in zip(roi, overlap))
        if any(s < 1 for s in steps):
            raise ValueError(f"step must be positive, got {steps}.")
        return steps

    def splitter(self, spatial_shape: Sequence[int]) -> SlidingWindowPositionSplitter:
        """The splitter used for an image of ``spatial_shape``."""
        return SlidingWindowPositionSplitter(
            patch_size=self.roi_size,
            step=self.steps(spatial_shape),
            pad_mode=self.pad_mode,
            pad_value=self.pad_value,
            align_last=self.align_last,
            device=self.sw_device,
            progress=self.progress,
        )

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Run ``network`` on every window of ``inputs`` ``(B, C, *S)`` and return the max-merged ``(B, N, *S)``."""
        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 3:
            raise ValueError(
                f"MaxSlidingWindowInferer expects a tensor (B, C, *S), got {type(inputs).__name__} "
                f"with shape {tuple(getattr(inputs, 'shape', ()))}."
            )
        spatial_shape = tuple(inputs.shape[2:])
        if not isinstance(self.roi_size, int) and len(self.roi_size) != len(spatial_shape):
            raise ValueError(f"roi_size {self.roi_size} does not match the input's spatial shape {spatial_shape}.")
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        patch_inferer = PatchInferer(
            splitter=self.splitter(spatial_shape),
            merger_cls=MaxMerger,
            batch_size=self.batch_size,
            value_dtype=self.value_dtype,
            device=self.device if self.device is not None else inputs.device,
            fill_value=self.fill_value,
        )
        output = patch_inferer(plain, network, *args, **kwargs)
        if isinstance(inputs, MetaTensor) and isinstance(output, torch.Tensor):
            output = MetaTensor(output)
            output.copy_meta_from(inputs, copy_attr=True)
            output.meta = copy.deepcopy(inputs.meta)
            output.applied_operations = copy.deepcopy(inputs.applied_operations)
        return output
