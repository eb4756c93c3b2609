"""Phantom datasets: the project's embedded default data, generated from shape models fitted to real annotations.

Every generator is deterministic from a seed (image ``i`` depends only on ``(seed, i)``) and writes the real
dataset's file layout plus a generic ``datalist.json``, so the same readers and bundles run on phantoms and on
real data. Command line: ``python scripts/generate_phantoms.py {spine_ct,ceph,hand_xray,hand_mri,spine_ap,all} --out DIR``.
"""

from mlm.data.phantoms.cephalogram import CephalogramPhantom, generate_cephalogram, write_cephalogram_dataset
from mlm.data.phantoms.chest import CHEST_LANDMARKS, ChestXRayPhantom, generate_chest_xray, write_chest_phantom
from mlm.data.phantoms.common import CSI2014_VERTEBRAE, HAND_MRI_LANDMARKS, HAND_XRAY_LANDMARKS, ISBI2015_LANDMARKS
from mlm.data.phantoms.hand_mri import HandMRIPhantom, generate_hand_mri, write_hand_mri_dataset
from mlm.data.phantoms.hand_xray import HandXRayPhantom, generate_hand_xray, write_hand_xray_dataset
from mlm.data.phantoms.shape_model import PointDistributionModel, fit_point_distribution_model, load_shape_model
from mlm.data.phantoms.spine_ap import SpineAPPhantom, generate_spine_ap, write_spine_ap_dataset
from mlm.data.phantoms.spine_ct import SpineCTPhantom, generate_spine_ct, write_spine_ct_dataset

__all__ = [
    "CSI2014_VERTEBRAE",
    "ISBI2015_LANDMARKS",
    "HAND_XRAY_LANDMARKS",
    "HAND_MRI_LANDMARKS",
    "PointDistributionModel",
    "fit_point_distribution_model",
    "load_shape_model",
    "SpineCTPhantom",
    "generate_spine_ct",
    "write_spine_ct_dataset",
    "CephalogramPhantom",
    "generate_cephalogram",
    "write_cephalogram_dataset",
    "HandXRayPhantom",
    "generate_hand_xray",
    "write_hand_xray_dataset",
    "HandMRIPhantom",
    "generate_hand_mri",
    "write_hand_mri_dataset",
    "CHEST_LANDMARKS",
    "ChestXRayPhantom",
    "generate_chest_xray",
    "write_chest_phantom",
    "SpineAPPhantom",
    "generate_spine_ap",
    "write_spine_ap_dataset",
]
