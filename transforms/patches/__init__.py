"""Landmark patches: fixed-size, fixed-spacing patches centred at world points (a global stage's predictions, or
landmarks plus a random error for training), each with its exact voxel-to-world affine and the landmarks in its voxel
grid. The sampling and training transforms of a coarse-to-fine refinement stage (``mlm.refine``)."""

from transforms.patches.array import PATCH_SAMPLING, LandmarkPatches, RandLandmarkPatches
from transforms.patches.dictionary import LandmarkPatchesd, RandLandmarkPatchesd
from transforms.patches.functional import (
    PATCH_AXES,
    PATCH_INTERPOLATION_MODES,
    PATCH_PADDING_MODES,
    isotropic_offsets,
    patch_affines,
    points_to_patches,
    rotation_matrices,
    sample_patches,
)

__all__ = [
    "PATCH_AXES",
    "PATCH_INTERPOLATION_MODES",
    "PATCH_PADDING_MODES",
    "PATCH_SAMPLING",
    "LandmarkPatches",
    "LandmarkPatchesd",
    "RandLandmarkPatches",
    "RandLandmarkPatchesd",
    "isotropic_offsets",
    "patch_affines",
    "points_to_patches",
    "rotation_matrices",
    "sample_patches",
]
