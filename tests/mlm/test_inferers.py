"""Tests for mlm.inferers: max merging equals a brute-force maximum over all windows, last-window alignment, metadata."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.inferers import PatchInferer, SlidingWindowInferer, SlidingWindowSplitter

from mlm.inferers import MaxMerger, MaxSlidingWindowInferer, SlidingWindowPositionSplitter, window_starts

torch.set_num_threads(1)


class WindowDependentNet(torch.nn.Module):
    """Not translation-equivariant: adds a per-window bias (10 x the window's first voxel) so windows disagree.

    Also asserts that every window has exactly ``roi`` size and records the windows' content sums.
    """

    def __init__(self, roi: tuple[int, ...]) -> None:
        super().__init__()
        self.roi = roi
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[2:]) == self.roi, f"window of shape {tuple(x.shape[2:])}, expected {self.roi}"
        self.calls += x.shape[0]
        bias = 10.0 * x[(slice(None), slice(0, 1)) + (slice(0, 1),) * (x.ndim - 2)]  # exact, no reduction
        return torch.cat([x + bias, -x + 3 * bias], dim=1)


def brute_force_max(image: torch.Tensor, net, roi, starts_per_axis) -> torch.Tensor:
    """Voxel-wise maximum over all windows (explicit list of starts per axis), -inf where no window."""
    out = None
    for start in itertools.product(*starts_per_axis):
        sl = tuple(slice(s, s + r) for s, r in zip(start, roi))
        pred = net(image[(slice(None), slice(None)) + sl])
        if out is None:
            out = torch.full((image.shape[0], pred.shape[1], *image.shape[2:]), -torch.inf)
        region = out[(slice(None), slice(None)) + sl]
        out[(slice(None), slice(None)) + sl] = torch.maximum(region, pred)
    return out


def test_window_starts_align_last_window_to_the_end():
    assert window_starts(200, 96, 64) == [0, 64, 104]
    assert window_starts(400, 192, 64) == [0, 64, 128, 192, 208]
    assert window_starts(192, 192, 64) == [0]
    assert window_starts(50, 96, 64) == [0]  # shorter than the window: the caller pads
    assert window_starts(200, 96, 64, align_last=False) == [0, 64, 128]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), patch=st.integers(1, 100), step=st.integers(1, 120))
def test_window_starts_cover_the_axis_and_match_monai_dense_patch_slices(size, patch, step):
    from monai.data.utils import dense_patch_slices

    starts = window_starts(size, patch, step)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if size >= patch:
        assert starts[-1] + patch == size  # last window ends exactly at the end
        if step <= patch:
            # windows overlap or touch: every voxel is covered
            covered = torch.zeros(size, dtype=torch.bool)
            for s in starts:
                covered[s : s + patch] = True
            assert covered.all()
            monai_starts = sorted({sl[0].start for sl in dense_patch_slices((size,), (patch,), (step,))})
            assert starts == monai_starts


@pytest.mark.parametrize("batch_size", [1, 4])
def test_max_merge_equals_brute_force_maximum_over_windows_3d(batch_size):
    torch.manual_seed(0)
    roi = (8, 12, 16)
    image = torch.rand(2, 1, 8, 20, 50)  # z length 50 is not a multiple of the step 10
    net = WindowDependentNet(roi)
    inferer = MaxSlidingWindowInferer(roi, step=(8, 6, 10), batch_size=batch_size)
    out = inferer(image, net)
    # windows per axis written out by hand (last aligned to the end: 20 - 12 = 8, 50 - 16 = 34)
    starts = [[0], [0, 6, 8], [0, 10, 20, 30, 34]]
    expected = brute_force_max(image, WindowDependentNet(roi), roi, starts)
    assert net.calls == 2 * 1 * 3 * 5  # B * windows
    assert out.shape == (2, 2, 8, 20, 50)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_max_merge_spine_layout_96_step_64_last_window_aligned_2d():
    torch.manual_seed(1)
    roi = (16, 48)
    image = torch.rand(1, 1, 16, 100)  # Payer's spine tiling scaled by 1/4: x fully covered, step = window / 3
    net = WindowDependentNet(roi)
    out = MaxSlidingWindowInferer(roi, step=(16, 16))(image, net)
    expected = brute_force_max(image, WindowDependentNet(roi), roi, [[0], [0, 16, 32, 48, 52]])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_volume_smaller_than_window_is_padded_and_cropped_back_exactly():
    torch.manual_seed(2)
    roi = (16, 16)
    image = torch.rand(1, 1, 10, 40)  # axis 0 shorter than the window
    out = MaxSlidingWindowInferer(roi, step=(16, 12), pad_value=0.0)(image, WindowDependentNet(roi))
    padded = torch.nn.functional.pad(image, (0, 0, 0, 6))
    expected = brute_force_max(padded, WindowDependentNet(roi), roi, [[0], [0, 12, 24]])[:, :, :10]
    assert out.shape == (1, 2, 10, 40)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_align_last_false_pads_the_end_like_sliding_window_splitter():
    torch.manual_seed(3)
    roi = (8, 8)
    image = torch.rand(1, 1, 8, 21)
    out = MaxSlidingWindowInferer(roi, step=8, align_last=False)(image, WindowDependentNet(roi))
    padded = torch.nn.functional.pad(image, (0, 3))
    expected = brute_force_max(padded, WindowDependentNet(roi), roi, [[0], [0, 8, 16]])[..., :21]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_metatensor_affine_and_meta_are_copied_to_the_output():
    affine = torch.tensor([[2.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]], dtype=torch.float64)
    image = MetaTensor(torch.rand(1, 1, 8, 8, 20), affine=affine, meta={"filename_or_obj": "case_7.nii.gz"})
    out = MaxSlidingWindowInferer((8, 8, 8), step=(8, 8, 4))(image, lambda x: 2 * x)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, affine)
    assert out.meta["filename_or_obj"] == "case_7.nii.gz"
    torch.testing.assert_close(out.as_tensor(), 2 * image.as_tensor())  # pointwise net: max merge is exact
    plain = MaxSlidingWindowInferer((8, 8, 8), step=4)(torch.rand(1, 1, 8, 8, 20), lambda x: x)
    assert not isinstance(plain, MetaTensor)


def test_overlap_gives_same_windows_and_same_result_as_monai_averaging_for_pointwise_net():
    torch.manual_seed(4)
    image = torch.rand(1, 2, 12, 30)
    net = lambda x: x[:, :1] * 3 - x[:, 1:]  # noqa: E731 (pointwise: every merge gives the same result)
    ours = MaxSlidingWindowInferer((8, 8), overlap=0.5)(image, net)
    ref = SlidingWindowInferer((8, 8), overlap=0.5)(image, net)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="either"):
        MaxSlidingWindowInferer((8, 8), overlap=0.5, step=4)


def test_max_merger_works_with_monai_patch_inferer_and_sliding_window_splitter():
    torch.manual_seed(5)
    image = torch.rand(1, 1, 16, 16)
    inferer = PatchInferer(SlidingWindowSplitter(8, overlap=0.5), merger_cls=MaxMerger)
    out = inferer(image, lambda x: x - 1)
    torch.testing.assert_close(out, image - 1, rtol=0, atol=0)


def test_max_merger_takes_maximum_and_fills_uncovered_voxels():
    merger = MaxMerger((1, 1, 4, 6), cropped_shape=(1, 1, 4, 5), fill_value=0.0)
    merger.aggregate(torch.full((1, 1, 2, 2), -5.0), (0, 0))
    merger.aggregate(torch.full((1, 1, 2, 2), -7.0), (0, 1))
    merger.aggregate(torch.full((1, 1, 2, 2), 3.0), (2, 3))
    out = merger.finalize()
    expected = torch.zeros(1, 1, 4, 5)
    expected[0, 0, :2, :3] = torch.tensor([[-5.0, -5.0, -7.0], [-5.0, -5.0, -7.0]])
    expected[0, 0, 2:, 3:5] = 3.0
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="finalized"):
        merger.aggregate(torch.zeros(1, 1, 2, 2), (0, 0))


def test_splitter_reports_padded_shape_and_window_count():
    splitter = SlidingWindowPositionSplitter((96, 96, 192), step=(96, 96, 64))
    volume = torch.zeros(1, 1, 96, 80, 400)
    assert splitter.get_padded_shape(volume) == (96, 96, 400)
    assert splitter.num_windows(volume) == 5
    locations = [loc for _, loc in splitter(torch.zeros(1, 1, 96, 96, 400))]
    assert [loc[2] for loc in locations] == [0, 64, 128, 192, 208]


def test_bad_input_raises_clear_errors():
    inferer = MaxSlidingWindowInferer((8, 8), step=4)
    with pytest.raises(ValueError, match="does not match"):
        inferer(torch.rand(1, 1, 8, 8, 8), lambda x: x)
    with pytest.raises(ValueError, match=r"\(B, C, \*S\)"):
        inferer(torch.rand(8, 8).numpy(), lambda x: x)
