"""Build the paper's attack for a bundle: eps in the bundle's intensity units, the attack by name, the output decoder.

"Miss the Point" (Yao et al., MICCAI 2020) states eps on the 0-255 grey-level scale of the X-ray ("eps 8"). The
bundles feed their networks normalised intensities (:func:`transforms.presets.normalization_transforms`), so the
eps of an attack is converted by :func:`intensity_eps`:

- ``"xray"``: ``(I - 128) / 128``: one grey level is ``1 / 128``, eps 8 is ``8 / 128 = 0.0625`` network units.
  (The authors' code divides by 256 instead: their ``--epsilon 8`` is ``8 / 256 = 0.03125`` in ``[-1, 1]``,
  i.e. 4 grey levels; pass ``eps_255=4`` for that setting.)
- ``"mr"`` (1st-99th percentiles to ``[-1, 1]``) and ``"ct"`` (HU / 2048): no 0-255 scale; a grey level is taken as
  ``1 / 255`` of the ``[-1, 1]`` span, eps 8 is ``16 / 255`` (for CT, about 128 HU).
- None: the image's own units (eps 8 = 8).

The valid range kept by the attack (:func:`intensity_value_range`) is ``[-1, 1]`` for ``"xray"`` and ``"mr"`` (the
images' range after normalisation) and unbounded for ``"ct"`` and None.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlm.attacks.iterative import PGD, AdaptiveTargetedIFGSM, LandmarkAttack, TargetedIFGSM
from mlm.attacks.objectives import LandmarkAttackObjective
from mlm.attacks.protocol import PAPER_TARGET_BOX_FRACTION
from transforms.post.array import heatmaps_to_voxels

__all__ = [
    "ATTACK_METHODS",
    "LandmarkOutputDecoder",
    "intensity_eps",
    "intensity_value_range",
    "paper_target_box",
    "to_grey_levels",
    "protocol_attack",
]

#: the attacks :func:`protocol_attack` builds by name: the paper's targeted I-FGSM (TI) and adaptive targeted
#: I-FGSM (ATI), and a targeted L-inf PGD with random start
ATTACK_METHODS = ("ti", "ati", "pgd")


def _normalization(normalization: str | None, spatial_dims: int) -> str | None:
    if normalization == "default":
        return "xray" if int(spatial_dims) == 2 else "ct"
    if normalization not in ("xray", "ct", "mr", None):
        raise ValueError(f"normalization must be 'xray', 'ct', 'mr', 'default' or None, got {normalization!r}.")
    return normalization


def intensity_eps(eps_255: float, normalization: str | None, spatial_dims: int = 2) -> float:
    """An eps given in grey levels of the 0-255 scale, in the network's normalised intensity units.

    Args:
        eps_255: eps in grey levels (the paper's 8).
        normalization: the bundle's ``intensity_normalization`` (``"xray"``, ``"ct"``, ``"mr"``, ``"default"``,
            None), see the module docstring for each conversion.
        spatial_dims: 2 or 3 (``"default"`` is xray in 2D, ct in 3D).
    """
    if not float(eps_255) >= 0:
        raise ValueError(f"intensity_eps: eps_255 must be >= 0 grey levels, got {eps_255}.")
    norm = _normalization(normalization, spatial_dims)
    if norm == "xray":
        return float(eps_255) / 128.0
    if norm in ("ct", "mr"):
        return 2.0 * float(eps_255) / 255.0
    return float(eps_255)


def intensity_value_range(normalization: str | None, spatial_dims: int = 2) -> tuple[float, float] | None:
    """The valid intensity range an attack keeps: ``(-1, 1)`` for ``"xray"`` and ``"mr"``, None (unbounded) for
    ``"ct"`` and None."""
    norm = _normalization(normalization, spatial_dims)
    return (-1.0, 1.0) if norm in ("xray", "mr") else None


def to_grey_levels(x: torch.Tensor, normalization: str | None, spatial_dims: int = 2) -> torch.Tensor:
    """Network intensities -> grey levels of the 0-255 scale, the inverse of the conversion of :func:`intensity_eps`
    (xray: ``128 x + 128``; mr / ct: ``255 (x + 1) / 2``; None: unchanged). Differences convert with the same
    slope (use ``to_grey_levels(d) - to_grey_levels(0)``). Not clipped."""
    norm = _normalization(normalization, spatial_dims)
    if norm == "xray":
        return x * 128.0 + 128.0
    if norm in ("ct", "mr"):
        return (x + 1.0) * 127.5
    return x


def paper_target_box(spatial_dims: int = 2) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box of the paper's random goals as fractions of the image size, in the **array axis order of the
    bundles' images** (``(min, max)``, D values each; :meth:`mlm.handlers.LandmarkAttackHandler` with
    ``box_in_fractions``).

    2D: the authors draw ``x ~ randint(100, 600)`` of the 640 columns and ``y ~ randint(250, 750)`` of the 800 rows.
    MONAI loads a 2D image as ``(W, H)`` (axis 0 = x, :mod:`transforms.geometry`), so the box is
    ``((100/640, 250/800), (600/640, 750/800))``: :data:`mlm.attacks.PAPER_TARGET_BOX_FRACTION` with its axes
    reversed (that constant is in the authors' ``(row, column)`` order). 3D (no paper protocol): the central half of
    every axis, ``[0.25, 0.75]``.
    """
    if int(spatial_dims) == 2:
        lo, hi = PAPER_TARGET_BOX_FRACTION
        return tuple(lo[::-1]), tuple(hi[::-1])
    if int(spatial_dims) == 3:
        return (0.25, 0.25, 0.25), (0.75, 0.75, 0.75)
    raise ValueError(f"paper_target_box: spatial_dims must be 2 or 3, got {spatial_dims}.")


def protocol_attack(
    method: str,
    objective: LandmarkAttackObjective,
    eps: float,
    step_fraction: float = 0.05,
    num_iterations: int = 300,
    value_range: Sequence[float] | None = None,
    record_iterations: Sequence[int] = (),
) -> LandmarkAttack:
    """The attack of the paper's protocol by name.

    Args:
        method: ``"ti"`` (:class:`mlm.attacks.TargetedIFGSM`), ``"ati"`` (:class:`mlm.attacks.AdaptiveTargetedIFGSM`)
            or ``"pgd"`` (targeted L-inf :class:`mlm.attacks.PGD` with a random start); case-insensitive.
        objective: the per-landmark objective of the bundle's model.
        eps: L-inf radius, network intensity units (:func:`intensity_eps`).
        step_fraction: step as a fraction of eps (the paper's 0.05).
        num_iterations: updates (the paper's 300).
        value_range: valid intensities, kept (:func:`intensity_value_range`).
        record_iterations: the checkpoints whose outputs the attack keeps (:func:`mlm.attacks.attack_checkpoints`).
    """
    name = str(method).lower()
    if name not in ATTACK_METHODS:
        raise ValueError(f"protocol_attack: method must be one of {ATTACK_METHODS}, got {method!r}.")
    if not float(step_fraction) > 0:
        raise ValueError(f"protocol_attack: step_fraction must be > 0, got {step_fraction}.")
    step = float(step_fraction) * float(eps)
    kwargs = {"num_iterations": int(num_iterations), "value_range": value_range, "record_iterations": record_iterations}
    if name == "ti":
        return TargetedIFGSM(objective, eps=eps, step_size=step, **kwargs)
    if name == "ati":
        return AdaptiveTargetedIFGSM(objective, eps=eps, step_size=step, **kwargs)
    return PGD(objective, eps=eps, step_size=step, norm="linf", targeted=True, random_start=True, **kwargs)


class LandmarkOutputDecoder:
    """Decode a batch of network outputs into landmarks in voxel coordinates of the output grid.

    The ``record_transform`` of an attack (:func:`mlm.attacks.iterative_landmark_attack`): the outputs at the
    checkpoints are kept as ``(B, N, D)`` coordinates instead of full heatmaps. No landmark is set missing (a
    prediction in the padding is still a prediction the attack can move).

    Args:
        method: the bundle's ``decoding`` (:func:`transforms.post.heatmaps_to_voxels`: ``"dark"``, ``"quadratic"``,
            ..., ``"voting"``, ``"voting_subpixel"``).
        radius: the offset radius R (voxels) of the voting decoders, ignored otherwise.

    Call with ``output (B, C, *S)``; returns ``(B, N, D)`` float64 on the CPU.
    """

    def __init__(self, method: str = "dark", radius: float | None = None) -> None:
        self.method = str(method)
        self.radius = None if radius is None else float(radius)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.ndim < 4:
            raise ValueError(
                f"LandmarkOutputDecoder: output must be (B, C, *S) with 2 or 3 spatial dims, got {tuple(output.shape)}."
            )
        dims = output.ndim - 2
        coords = [heatmaps_to_voxels(o.detach().cpu(), self.method, self.radius, dims)[0] for o in output]
        return torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in coords])

    def __repr__(self) -> str:
        return f"LandmarkOutputDecoder(method={self.method!r}, radius={self.radius})"
