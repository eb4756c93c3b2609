"""transforms.heatmap.voting.vote_landmarks (offset voting) and its use by transforms.post.HeatmapsToLandmarks."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor

from transforms.heatmap.offset_maps import offset_map_targets
from transforms.heatmap.voting import default_num_votes, vote_landmarks
from transforms.post import HeatmapsToLandmarks

#: sub-pixel voting error bound on perfect maps (px): float rounding only
EXACT_TOLERANCE = 1e-6
#: sub-pixel voting error bound (px, max over landmarks) with offsets perturbed by N(0, 0.25 px) noise
NOISY_TOLERANCE = 0.15


def perfect_output(landmarks: torch.Tensor, shape: tuple[int, ...], radius: float) -> torch.Tensor:
    """``(B, N * (1 + D), *S)`` of a perfect network: the truncated Gaussians as heatmaps and the exact offsets."""
    outs = []
    for lm in landmarks:
        gauss, _, offsets = offset_map_targets(lm, shape, radius)
        outs.append(torch.cat([gauss, offsets.reshape(-1, *shape)]))
    return torch.stack(outs)


def test_default_number_of_votes_is_the_disk_or_ball_area():
    assert default_num_votes(40, 2) == 5026 and default_num_votes(10, 2) == 314
    assert default_num_votes(3, 3) == int(4 / 3 * math.pi * 27)


@pytest.mark.parametrize("spatial_dims,shape,radius", [(2, (60, 50), 5.0), (2, (64, 48), 10.0), (3, (24, 20, 28), 3.0)])
def test_integer_landmarks_are_recovered_exactly(spatial_dims, shape, radius):
    g = torch.Generator().manual_seed(spatial_dims)
    size = torch.tensor(shape)
    landmarks = (
        (torch.rand(2, 3, spatial_dims, generator=g) * (size - 1)).round().double()
    )  # (B, N, D), near borders too
    coords, votes = vote_landmarks(perfect_output(landmarks, shape, radius), spatial_dims, radius)
    assert coords.shape == (2, 3, spatial_dims) and coords.dtype == torch.float64
    assert torch.equal(coords, landmarks)
    assert bool((votes > 0).all() & (votes <= 1).all())


@pytest.mark.parametrize("spatial_dims,shape,radius", [(2, (60, 50), 5.0), (3, (24, 20, 28), 3.0)])
def test_subpixel_voting_recovers_float_landmarks(spatial_dims, shape, radius):
    g = torch.Generator().manual_seed(10 + spatial_dims)
    size = torch.tensor(shape, dtype=torch.float64)
    landmarks = 2 + torch.rand(2, 4, spatial_dims, generator=g, dtype=torch.float64) * (size - 5)
    output = perfect_output(landmarks, shape, radius)
    coords, _ = vote_landmarks(output, spatial_dims, radius, subpixel=True)
    assert (coords - landmarks).abs().max().item() <= EXACT_TOLERANCE
    # the paper's integer decoding: the voxel nearest to the landmark
    integer, _ = vote_landmarks(output, spatial_dims, radius)
    assert torch.equal(integer, torch.round(landmarks))


def test_subpixel_voting_with_noisy_offsets_stays_within_tolerance():
    shape, radius = (80, 70), 8.0
    g = torch.Generator().manual_seed(3)
    landmarks = 10 + torch.rand(1, 6, 2, generator=g, dtype=torch.float64) * 50
    output = perfect_output(landmarks, shape, radius)
    output[:, 6:] += torch.randn(output[:, 6:].shape, generator=g, dtype=torch.float64) * (0.25 / radius)
    coords, _ = vote_landmarks(output, 2, radius, subpixel=True)
    assert (coords - landmarks).norm(dim=-1).max().item() <= NOISY_TOLERANCE


def test_landmark_whose_votes_all_leave_the_image_is_missing():
    shape, radius = (40, 40), 4.0
    landmarks = torch.tensor([[[20.0, 20.0], [10.0, 30.0]]], dtype=torch.float64)
    output = perfect_output(landmarks, shape, radius)
    output[:, 2 + 1] = 100.0  # landmark 1's axis-0 offsets: 400 px out of the image
    coords, votes = vote_landmarks(output, 2, radius)
    assert torch.equal(coords[0, 0], landmarks[0, 0]) and votes[0, 0] > 0
    assert bool(torch.isnan(coords[0, 1]).all()) and votes[0, 1] == 0


def test_heatmaps_to_landmarks_decodes_by_voting_in_world_mm():
    shape, radius = (48, 40), 4.0
    landmarks = torch.tensor([[[12.25, 30.5], [40.0, 7.75]]], dtype=torch.float64)
    output = perfect_output(landmarks, shape, radius)[0].float()
    affine = torch.diag(torch.tensor([2.0, 0.5, 1.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.zeros(1, *shape), affine=affine)
    world, voxels, values = HeatmapsToLandmarks(method="voting_subpixel", radius=radius, outside="keep")(output, image)
    assert (voxels - landmarks[0]).abs().max().item() <= 1e-4
    assert (world - landmarks[0] * torch.tensor([2.0, 0.5], dtype=torch.float64)).abs().max().item() <= 1e-4
    assert values.shape == (2,)
    with pytest.raises(ValueError, match="radius"):
        HeatmapsToLandmarks(method="voting")
