"""Intensity normalisation and the SCN random shift/scale: exact values, ranges, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor

from transforms.intensity import (
    NormalizeCT,
    NormalizeCTd,
    NormalizeXRay,
    NormalizeXRayd,
    RandIntensityShiftScale,
    RandIntensityShiftScaled,
)


def test_normalize_ct_hu_over_2048_clipped():
    hu = torch.tensor([[-3024.0, -1024.0, 0.0, 1024.0, 4000.0]])
    torch.testing.assert_close(NormalizeCT()(hu), torch.tensor([[-1.0, -0.5, 0.0, 0.5, 1.0]]))
    img = MetaTensor(hu.to(torch.int16), meta={"filename_or_obj": "ct.nii"})
    out = NormalizeCTd()({"image": img})["image"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.meta["filename_or_obj"] == "ct.nii"


def test_normalize_xray_8bit_and_minmax():
    img = torch.tensor([[0.0, 64.0, 128.0, 255.0, 300.0]])
    torch.testing.assert_close(NormalizeXRay()(img), torch.tensor([[-1.0, -0.5, 0.0, 127 / 128, 1.0]]))
    torch.testing.assert_close(NormalizeXRayd(mode="minmax")({"image": img})["image"], 2 * img / 300 - 1)
    assert float(NormalizeXRay("minmax")(torch.full((1, 3), 7.0)).abs().max()) == 0.0
    with pytest.raises(ValueError, match="mode"):
        NormalizeXRay("zscore")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_shift_scale_is_affine_in_range_and_clamped(seed):
    img = torch.linspace(-0.9, 0.9, 19)[None]
    xform = RandIntensityShiftScale(shift=0.25, scale=0.25, clip=None).set_random_state(seed)
    out = xform(img)
    s, f = xform._shift, xform._factor
    assert abs(s) <= 0.25 and 0.75 <= f <= 1.25
    torch.testing.assert_close(out, (img + s) * f, atol=1e-6, rtol=0)
    clamped = RandIntensityShiftScale(shift=0.25, scale=0.25).set_random_state(seed)(img * 10)
    assert float(clamped.max()) <= 1.0 and float(clamped.min()) >= -1.0


def test_dictionary_form_one_draw_for_all_keys_and_seeded():
    img = torch.linspace(-0.5, 0.5, 11)[None]
    xform = RandIntensityShiftScaled(keys=("a", "b"), shift=0.15, scale=0.15).set_random_state(3)
    out = xform({"a": img, "b": img.clone()})
    torch.testing.assert_close(out["a"], out["b"])
    again = RandIntensityShiftScaled(keys=("a", "b"), shift=0.15, scale=0.15).set_random_state(3)({"a": img, "b": img})
    torch.testing.assert_close(out["a"], again["a"])
    assert not np.allclose(out["a"].numpy(), img.numpy())
