"""Ready-made transform lists for the SpatialConfiguration-Net (Payer et al., MedIA 2019).

Defaults follow ``shared/docs/METHODS.md`` section 4 (the authors' code):

- 2D cephalometry: 512x512 at 0.46875 mm; translation U(+-10 mm), rotation U(+-0.25 rad), isotropic
  scale 1 + U(+-0.2) then per-axis 1 + U(+-0.2); elastic B-spline 5x5 coefficients U(+-10 mm);
  intensity (I - 128) / 128, shift U(+-0.25) then scale 1 + U(+-0.25), clamp.
- 3D spine CT: 96x96x192 at 2 mm; translation U(+-20 mm), rotation U(+-0.2 rad) per axis, per-axis
  scale 1 + U(+-0.1); elastic 5x5x5 coefficients U(+-15 mm); HU / 2048, shift and scale U(+-0.15).

Where this differs from the authors' code:

- The augmentation runs on the already resampled grid (one MONAI ``RandAffined`` resampling of the
  preprocessed image) instead of composing everything into one resampling of the original image;
  the image is therefore interpolated twice (once in preprocessing, once here) plus once by the
  elastic warp.
- The elastic field is drawn in the processed grid for 2D and 3D alike (the spine code draws it in
  the input domain); magnitudes given in mm are converted with ``spacing``.
- The spine's random z-crop ((z extent - 384 mm) * U(+-0.5)) is left to the cropping transform of the
  bundle; the input Gaussian smoothing (sigma 0.15 mm / 0.5) is not applied.
- Out-of-image padding is ``padding_mode`` of the already normalised image (0 by default; SCN spine
  pads with -3024 HU, i.e. -1 after normalisation: use ``padding_mode="border"`` as a close substitute).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    LoadImaged,
    Orientationd,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from transforms.intensity.dictionary import NormalizeCTd, NormalizeXRayd, RandIntensityShiftScaled
from transforms.landmarks.dictionary import LoadLandmarksd, SetSpacingd, TrackLandmarksd
from transforms.spatial.affine import RandScaledAffined
from transforms.spatial.dictionary import EnsureSpatialDimsd, FitPixelOnlyd, RandLandmarkElasticd, ResizeToFitd

__all__ = ["SCN_DEFAULTS", "normalization_transforms", "scn_preprocessing", "scn_train_augmentation"]

#: Paper/code defaults per spatial dimension (METHODS.md section 4).
SCN_DEFAULTS = {
    2: {
        "spacing": 0.46875,
        "spatial_size": (512, 512),
        "translation": 10.0,
        "rotation": 0.25,
        "scale": 0.2,
        "per_axis_scale": 0.2,
        "elastic_control_points": 5,
        "elastic_magnitude": 10.0,
        "intensity_shift": 0.25,
        "intensity_scale": 0.25,
        "normalization": "xray",
    },
    3: {
        "spacing": 2.0,
        "spatial_size": (96, 96, 192),
        "translation": 20.0,
        "rotation": 0.2,
        "scale": 0.0,
        "per_axis_scale": 0.1,
        "elastic_control_points": 5,
        "elastic_magnitude": 15.0,
        "intensity_shift": 0.15,
        "intensity_scale": 0.15,
        "normalization": "ct",
    },
}


def _defaults(spatial_dims: int) -> dict:
    if spatial_dims not in SCN_DEFAULTS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    return SCN_DEFAULTS[spatial_dims]


def _per_axis(value: float | Sequence[float], spatial_dims: int, name: str) -> tuple[float, ...]:
    vals = tuple(float(v) for v in value) if isinstance(value, Sequence) else (float(value),) * spatial_dims
    if len(vals) != spatial_dims:
        raise ValueError(f"{name} {value} does not match {spatial_dims} spatial dims.")
    return vals


def normalization_transforms(normalization: str | None, spatial_dims: int = 2, image_key: str = "image") -> list:
    """The SCN pipelines' intensity normalisation as a list of dictionary transforms (empty for None).

    ``"xray"`` ((I - 128) / 128), ``"ct"`` (HU / 2048), ``"mr"`` (1st/99th intensity percentiles of each image to
    [-1, 1], clipped), ``"default"`` (xray in 2D, ct in 3D) or None.
    """
    if normalization == "default":
        normalization = _defaults(spatial_dims)["normalization"]
    if normalization == "xray":
        return [NormalizeXRayd(keys=image_key)]
    if normalization == "ct":
        return [NormalizeCTd(keys=image_key)]
    if normalization == "mr":
        return [
            ScaleIntensityRangePercentilesd(keys=image_key, lower=1.0, upper=99.0, b_min=-1.0, b_max=1.0, clip=True)
        ]
    if normalization is not None:
        raise ValueError(f"normalization must be 'xray', 'ct', 'mr', 'default' or None, got {normalization!r}.")
    return []


def scn_preprocessing(
    image_key: str = "image",
    landmark_key: str = "landmarks",
    spatial_dims: int = 2,
    spacing: float | Sequence[float] | None = None,
    spatial_size: Sequence[int] | None = None,
    resize: str = "pad_crop",
    num_landmarks: int | None = None,
    coordinate_system: str | None = None,
    outside: str = "error",
    normalization: str | None = "default",
    orientation: str | None = "default",
    spacing_key: str | None = None,
    image_reader: str | None = None,
) -> list:
    """The deterministic part of the SCN pipeline as a list of dictionary transforms.

    Load the image (channel first; a 2D image stored with a trailing singleton axis, e.g. a ``W x H x 1``
    MetaImage, is squeezed to 2D) -> optional ``SetSpacingd`` (pixel-only images) -> load landmarks in its
    voxel grid -> orientation (3D) -> resample to ``spacing`` -> centre pad/crop, stretch, or
    aspect-preserving fit to ``spatial_size`` -> ``TrackLandmarksd`` -> intensity normalisation.

    Args:
        image_key, landmark_key: data-dict keys (image path; landmark file path or inline list).
        spatial_dims: 2 (cephalometry/hand X-ray defaults) or 3 (spine CT defaults).
        spacing: output voxel spacing in mm (float or per axis); default 0.46875 (2D) or 2.0 (3D).
            Non-positive values keep the image's own spacing (no resampling step when all are).
        spatial_size: output grid; default (512, 512) or (96, 96, 192).
        resize: ``"pad_crop"`` (centre pad/crop at ``spacing``, SCN), ``"resize"`` (then ``spacing``
            only sets the intermediate grid and the output is stretched to ``spatial_size``) or ``"fit"``
            (aspect-preserving fit of the whole image into ``spatial_size``, Payer's MICCAI 2016 hand
            X-ray input, :class:`transforms.spatial.ResizeToFitd`: the output voxel size follows the
            image's extent; padding is 0 before normalisation), or ``"auto"``: ``"pad_crop"`` at ``spacing`` for
            images with a physical pixel size, ``"fit"`` for pixel-only ones (:class:`transforms.spatial.FitPixelOnlyd`).
        num_landmarks, coordinate_system, outside: see :class:`transforms.LoadLandmarksd`.
        normalization: ``"xray"``, ``"ct"``, ``"mr"`` (1st/99th intensity percentiles of each image to
            [-1, 1], clipped), None, or ``"default"`` (xray in 2D, ct in 3D).
        orientation: axcodes for ``Orientationd`` (default ``"RAS"`` in 3D, none in 2D), None to skip.
        spacing_key: data-dict key with a per-item pixel spacing for images without physical
            metadata (``SetSpacingd``); None to skip.
        image_reader: reader name passed to ``LoadImaged`` (e.g. ``"ITKReader"``), None for MONAI's choice.

    Returns:
        list of transforms; landmarks come out as ``(N, D)`` voxel coordinates of the output grid.
    """
    dflt = _defaults(spatial_dims)
    spacing = _per_axis(dflt["spacing"] if spacing is None else spacing, spatial_dims, "spacing")
    spatial_size = tuple(dflt["spatial_size"] if spatial_size is None else spatial_size)
    if len(spatial_size) != spatial_dims:
        raise ValueError(f"spatial_size {spatial_size} does not match {spatial_dims} spatial dims.")
    if resize not in ("pad_crop", "resize", "fit", "auto"):
        raise ValueError(f"resize must be 'pad_crop', 'resize', 'fit' or 'auto', got {resize!r}.")
    if normalization == "default":
        normalization = dflt["normalization"]
    if orientation == "default":
        orientation = "RAS" if spatial_dims == 3 else None
    xs: list = [
        LoadImaged(keys=image_key, reader=image_reader, ensure_channel_first=True, image_only=True),
        EnsureSpatialDimsd(keys=image_key, spatial_dims=spatial_dims),
    ]
    if spacing_key is not None:
        xs.append(SetSpacingd(keys=image_key, spacing_key=spacing_key, allow_missing_keys=True))
    xs.append(
        LoadLandmarksd(
            keys=landmark_key,
            ref_key=image_key,
            num_landmarks=num_landmarks,
            coordinate_system=coordinate_system,
            outside=outside,
        )
    )
    if orientation is not None:
        xs.append(Orientationd(keys=image_key, axcodes=orientation, labels=None))
    if resize == "auto":  # resampling and pad/crop, or the fit, chosen per image
        xs.append(FitPixelOnlyd(keys=image_key, spacing=spacing, spatial_size=spatial_size))
    else:
        if any(s > 0 for s in spacing):
            xs.append(Spacingd(keys=image_key, pixdim=spacing, mode="bilinear", padding_mode="zeros"))
        if resize == "pad_crop":
            xs.append(ResizeWithPadOrCropd(keys=image_key, spatial_size=spatial_size))
        elif resize == "fit":
            xs.append(ResizeToFitd(keys=image_key, spatial_size=spatial_size, anti_aliasing=True, pad_value=0.0))
        else:
            xs.append(Resized(keys=image_key, spatial_size=spatial_size, mode="bilinear"))
    xs.append(TrackLandmarksd(keys=landmark_key, ref_key=image_key))
    xs.extend(normalization_transforms(normalization, spatial_dims, image_key))
    return xs


def scn_train_augmentation(
    image_key: str = "image",
    landmark_key: str = "landmarks",
    spatial_dims: int = 2,
    spacing: float | Sequence[float] | None = None,
    translation: float | None = None,
    rotation: float | None = None,
    scale: float | None = None,
    per_axis_scale: float | None = None,
    elastic_control_points: int | None = None,
    elastic_magnitude: float | None = None,
    intensity_shift: float | None = None,
    intensity_scale: float | None = None,
    intensity_clip: tuple[float, float] | None = (-1.0, 1.0),
    prob: float = 1.0,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> list:
    """The SCN training augmentation as a list of dictionary transforms, for a preprocessed grid.

    ``RandScaledAffined`` (MONAI ``RandAffined`` + isotropic scale) -> ``TrackLandmarksd`` ->
    ``RandLandmarkElasticd`` -> ``RandIntensityShiftScaled``. Every argument left None takes the
    paper/code default for ``spatial_dims`` (:data:`SCN_DEFAULTS`).

    Args:
        image_key, landmark_key: data-dict keys (image ``(C, *S)``, landmarks ``(N, D)`` voxels).
        spatial_dims: 2 or 3.
        spacing: mm per voxel of the processed grid (float or per axis), to convert the mm ranges
            into voxels; default 0.46875 (2D) / 2.0 (3D).
        translation: half-range in mm per axis (2D 10, 3D 20).
        rotation: half-range in rad (2D 0.25 in-plane; 3D 0.2 about each axis).
        scale: isotropic scale half-range (2D 0.2, 3D 0).
        per_axis_scale: per-axis scale half-range (2D 0.2, 3D 0.1).
        elastic_control_points: B-spline coefficients per axis (5).
        elastic_magnitude: coefficient half-range in mm (2D 10, 3D 15); 0 disables the elastic step.
        intensity_shift, intensity_scale: half-ranges (2D 0.25, 3D 0.15).
        intensity_clip: clamp after the intensity step, None for no clamp.
        prob: probability of each random step.
        mode, padding_mode: image interpolation and padding of the spatial steps.
    """
    dflt = _defaults(spatial_dims)

    def pick(value, name):
        return dflt[name] if value is None else value

    spacing = _per_axis(pick(spacing, "spacing"), spatial_dims, "spacing")
    translation = pick(translation, "translation")
    rotation = pick(rotation, "rotation")
    rotate_range = (rotation,) if spatial_dims == 2 else (rotation,) * 3
    xs: list = [
        RandScaledAffined(
            keys=image_key,
            spatial_dims=spatial_dims,
            prob=prob,
            isotropic_scale=pick(scale, "scale"),
            scale_range=pick(per_axis_scale, "per_axis_scale"),
            rotate_range=rotate_range,
            translate_range=tuple(translation / s for s in spacing),
            mode=mode,
            padding_mode=padding_mode,
        ),
        TrackLandmarksd(keys=landmark_key, ref_key=image_key),
    ]
    magnitude = pick(elastic_magnitude, "elastic_magnitude")
    if magnitude > 0:
        xs.append(
            RandLandmarkElasticd(
                keys=image_key,
                landmark_keys=landmark_key,
                prob=prob,
                num_control_points=pick(elastic_control_points, "elastic_control_points"),
                magnitude=tuple(magnitude / s for s in spacing),
                magnitude_units="voxel",
                mode=mode,
                padding_mode=padding_mode,
            )
        )
    xs.append(
        RandIntensityShiftScaled(
            keys=image_key,
            shift=pick(intensity_shift, "intensity_shift"),
            scale=pick(intensity_scale, "intensity_scale"),
            clip=intensity_clip,
            prob=prob,
        )
    )
    return xs
