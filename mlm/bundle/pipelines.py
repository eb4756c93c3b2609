"""Transform pipelines the bundles compose: preprocessing with or without landmarks, the random training window, and
the refinement stage's full-resolution image and patch normalisation (``configs/refine*.yaml``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import Compose, CopyItemsd, LoadImaged, RandSpatialCropd, SpatialPadd

from transforms.io.images import CheckedLoadImaged
from transforms.landmarks.dictionary import LoadLandmarksd, TrackLandmarksd
from transforms.presets import normalization_transforms, scn_preprocessing

__all__ = ["PatchNormalization", "full_resolution_preprocessing", "landmark_preprocessing", "random_window_crop"]


def landmark_preprocessing(
    spatial_dims: int,
    spacing: float | Sequence[float],
    spatial_size: Sequence[int],
    num_landmarks: int | None = None,
    with_landmarks: bool = True,
    image_key: str = "image",
    landmark_key: str = "landmarks",
    outside: str = "error",
    spacing_key: str | None = "spacing",
    normalization: str | None = "default",
    resize: str = "pad_crop",
    channels: int | None = 1,
    image_reader: str | None = None,
) -> list:
    """Deterministic preprocessing of the SCN bundles (:func:`transforms.presets.scn_preprocessing`).

    Load (channel first, checked by :class:`transforms.io.CheckedLoadImaged`: an unreadable, truncated,
    wrong-dimensional, multi-channel or NaN-holding image raises a ``ValueError`` naming the file) -> pixel spacing
    of pixel-only images (the item's ``spacing``) -> landmarks into the image's voxel grid -> RAS orientation (3D)
    -> resample to ``spacing`` mm -> centre pad/crop to ``spatial_size`` (``-1`` keeps an axis, e.g. the spine's z
    extent; or an aspect-preserving fit, ``resize``) -> landmarks tracked into the new grid -> intensity
    normalisation (X-ray 2D, CT HU/2048 3D, or as given).

    Args:
        spatial_dims: 2 or 3.
        spacing: output spacing, mm (float or per axis).
        spatial_size: output grid, ``-1`` keeps that axis's size.
        num_landmarks: expected landmarks per file (a file with another count raises, naming the file).
        with_landmarks: False for inference on images without annotations: the landmark steps are left out.
        image_key, landmark_key: data-dict keys.
        outside: landmarks outside their image: ``"error"``, ``"missing"`` (NaN row) or ``"keep"``.
        spacing_key: data-dict key of a per-item pixel spacing (images without physical metadata), or None.
        normalization: ``"xray"``, ``"ct"``, ``"mr"``, None or ``"default"`` (xray in 2D, ct in 3D).
        resize: ``"pad_crop"`` (default), ``"fit"`` (aspect-preserving fit of the whole image into
            ``spatial_size``; with ``spacing`` <= 0 the image keeps its own spacing first) or ``"resize"``.
        channels: channels every image must have (the bundles' networks take 1), None for any.
        image_reader: MONAI reader name (e.g. ``"ITKReader"``), None to choose by file extension.

    Returns:
        list of dictionary transforms.
    """
    xs = scn_preprocessing(
        image_key=image_key,
        landmark_key=landmark_key,
        spatial_dims=spatial_dims,
        spacing=spacing,
        spatial_size=spatial_size,
        num_landmarks=num_landmarks,
        outside=outside,
        spacing_key=spacing_key,
        normalization=normalization,
        resize=resize,
        image_reader=image_reader,
    )
    loader = CheckedLoadImaged(keys=image_key, reader=image_reader, spatial_dims=spatial_dims, channels=channels)
    xs = [loader if isinstance(x, LoadImaged) else x for x in xs]
    if not any(x is loader for x in xs):  # scn_preprocessing starts with LoadImaged
        raise RuntimeError("landmark_preprocessing: scn_preprocessing has no LoadImaged step to replace.")
    if not with_landmarks:
        xs = [x for x in xs if not isinstance(x, LoadLandmarksd | TrackLandmarksd)]
    return xs


def random_window_crop(
    roi_size: Sequence[int],
    image_key: str = "image",
    landmark_key: str = "landmarks",
    pad_value: float = -1.0,
) -> list:
    """A random training window of ``roi_size`` (Payer's random z-crop of the spine): pad to at least the window
    (with ``pad_value``, -1 = air after CT normalisation), crop at a random position, track the landmarks.

    Landmarks outside the window keep their (outside) coordinates: their Gaussian targets fall off the grid.
    """
    return [
        SpatialPadd(keys=image_key, spatial_size=list(roi_size), mode="constant", value=pad_value),
        RandSpatialCropd(keys=image_key, roi_size=list(roi_size), random_size=False),
        TrackLandmarksd(keys=landmark_key, ref_key=image_key),
    ]


def full_resolution_preprocessing(
    spatial_dims: int,
    num_landmarks: int | None = None,
    with_landmarks: bool = True,
    image_key: str = "image",
    source_key: str | None = None,
    landmark_key: str = "landmarks",
    outside: str = "error",
    spacing_key: str | None = "spacing",
    channels: int | None = 1,
    image_reader: str | None = None,
) -> list:
    """The image as read (no resampling, no cropping, no intensity normalisation), for the refinement stage.

    :func:`landmark_preprocessing` with the image's own spacing and grid: load (checked, one channel), the pixel
    spacing of pixel-only images (the item's ``spacing``), the landmarks in its voxel grid (``with_landmarks``),
    RAS orientation in 3D. The patches are cut from it (:class:`transforms.patches.RandLandmarkPatchesd`,
    :class:`mlm.refine.PatchRefinerd`) and normalised afterwards (:class:`PatchNormalization`, or
    :func:`transforms.presets.normalization_transforms` after the patch step in training).

    Args:
        spatial_dims, num_landmarks, with_landmarks, landmark_key, outside, spacing_key, channels, image_reader:
            as :func:`landmark_preprocessing`.
        image_key: key to load the image into.
        source_key: copy the image's file name from this key first (inference: the global stage keeps ``image``
            and the full-resolution image goes to a second key), None to load ``image_key`` in place. Needs
            ``with_landmarks=False`` (the landmarks are the global stage's).
    """
    if source_key is not None and with_landmarks:
        raise ValueError("full_resolution_preprocessing: a copied image (source_key) is loaded without landmarks.")
    xs = landmark_preprocessing(
        spatial_dims=spatial_dims,
        spacing=0.0,
        spatial_size=(-1,) * spatial_dims,
        num_landmarks=num_landmarks,
        with_landmarks=with_landmarks,
        image_key=image_key,
        landmark_key=landmark_key,
        outside=outside,
        spacing_key=spacing_key,
        normalization=None,
        resize="pad_crop",
        channels=channels,
        image_reader=image_reader,
    )
    return xs if source_key is None else [CopyItemsd(keys=source_key, names=image_key), *xs]


class PatchNormalization:
    """The bundle's intensity normalisation applied to each patch of a batch ``(K, C, *P)`` separately (the
    ``patch_transform`` of :class:`mlm.refine.PatchRefiner`): the same as in training, where it follows the patch
    step (per-image statistics, e.g. ``"mr"``'s percentiles, are then per patch in both).

    Args:
        normalization: ``"xray"``, ``"ct"``, ``"mr"``, ``"default"`` or None, see
            :func:`transforms.presets.normalization_transforms`.
        spatial_dims: 2 or 3 (for ``"default"``).
    """

    def __init__(self, normalization: str | None, spatial_dims: int = 2) -> None:
        self.transform = Compose(normalization_transforms(normalization, spatial_dims, "image"))

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        if not self.transform.transforms:
            return patches
        return torch.stack([torch.as_tensor(self.transform({"image": p})["image"]) for p in patches])
