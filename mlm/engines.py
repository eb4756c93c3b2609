"""Engine wiring for landmark detection: how a batch of images and landmarks reaches the network and the loss.

MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, label)`` with what ``prepare_batch`` returns as the
label. For heatmap regression with targets built inside the loss (so that sigma can be learned, see
:class:`mlm.losses.SCNHeatmapLoss`) the label is the landmark tensor itself: :class:`PrepareLandmarkBatch`
returns ``(image (B, C, *S), landmarks (B, N, D))``, landmarks in voxel coordinates of the image, NaN rows for
missing landmarks. :class:`PrepareDomainBatch` also hands a universal model the batch's domain
(``network(image, domain=k)``) through the ``(inputs, targets, args, kwargs)`` form that MONAI's engines accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch

from mlm.memory_format import memory_format_of

__all__ = ["PrepareDomainBatch", "PrepareLandmarkBatch", "lower_is_better"]


class PrepareLandmarkBatch(PrepareBatch):
    """``prepare_batch`` for trainers and evaluators: ``(image, landmarks)`` from a collated batch dict.

    Args:
        image_key: key of the batched image ``(B, C, *S)`` (a ``MetaTensor`` keeps its affine, which the
            post-processing uses to map voxel coordinates to world mm).
        landmarks_key: key of the batched landmarks ``(B, N, D)`` (voxel coordinates, NaN rows missing).
            When the batch has no such key, or holds unloaded file names (plain inference), the label is ``None``.
        num_landmarks: expected ``N``; a batch with another count raises ``ValueError`` naming the images.
        memory_format: the image's memory layout: ``"contiguous"`` (default) or ``"channels_last"`` (NHWC / NDHWC,
            matching a network converted with :func:`mlm.bundle.with_memory_format`).

    Returns (from ``__call__``): ``image`` on ``device`` and ``landmarks`` as a plain tensor ``(B, N, D)`` on
    ``device`` (or ``None``), in their floating dtype (float64 as ``LoadLandmarksd`` gives them, so that the
    evaluation maps the ground truth to world mm without float32 rounding; the losses cast them to theirs).
    """

    def __init__(
        self,
        image_key: str = "image",
        landmarks_key: str = "landmarks",
        num_landmarks: int | None = None,
        memory_format: str | None = None,
    ) -> None:
        self.image_key = image_key
        self.landmarks_key = landmarks_key
        self.num_landmarks = num_landmarks
        memory_format_of(memory_format, 4)  # an unknown name raises here, not at the first batch
        self.memory_format = memory_format

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(batchdata, Mapping) or self.image_key not in batchdata:
            keys = list(batchdata) if isinstance(batchdata, Mapping) else type(batchdata).__name__
            raise ValueError(f"PrepareLandmarkBatch: the batch has no {self.image_key!r} entry (got {keys}).")
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        if self.memory_format not in (None, "contiguous") and image.ndim in (4, 5):
            image = image.contiguous(memory_format=memory_format_of(self.memory_format, image.ndim))
        landmarks = batchdata.get(self.landmarks_key)
        if not isinstance(landmarks, torch.Tensor):  # absent, or file names that inference did not load
            return image, None
        if isinstance(landmarks, MetaTensor):
            landmarks = landmarks.as_tensor()
        dtype = landmarks.dtype if landmarks.is_floating_point() else torch.float64
        landmarks = landmarks.to(device=device, dtype=dtype, non_blocking=non_blocking)
        if landmarks.ndim != 3 or landmarks.shape[0] != image.shape[0] or landmarks.shape[-1] != image.ndim - 2:
            raise ValueError(
                f"PrepareLandmarkBatch: landmarks must be (B, N, D) = ({image.shape[0]}, N, {image.ndim - 2}) for images "
                f"{tuple(image.shape)}, got {tuple(landmarks.shape)} (images {_names(image)})."
            )
        if self.num_landmarks is not None and landmarks.shape[1] != self.num_landmarks:
            raise ValueError(
                f"PrepareLandmarkBatch: {landmarks.shape[1]} landmarks per image, the network predicts "
                f"{self.num_landmarks} (images {_names(image)})."
            )
        return image, landmarks


class PrepareDomainBatch(PrepareLandmarkBatch):
    """:class:`PrepareLandmarkBatch` for a universal model: also the batch's domain, as ``network(..., domain=k)``.

    MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` accept ``(inputs, targets, args, kwargs)`` from
    ``prepare_batch`` and call ``inferer(inputs, network, *args, **kwargs)``, which calls ``network(inputs, **kwargs)``;
    the domain thus reaches the network without a custom engine. A batch is one domain
    (:class:`mlm.bundle.domains.DomainBlockSampler`).

    Args:
        domain_key: the batch key of the domain indices ``(B,)`` (the datalist's ``"domain"``).
        num_landmarks: landmarks per image of each domain (a batch of domain ``k`` must have ``num_landmarks[k]``),
            or None.
        default_domain: the domain of batches without ``domain_key`` (inference on one domain's images).
        image_key, landmarks_key, memory_format: as :class:`PrepareLandmarkBatch`.

    Returns (from ``__call__``): ``(image, landmarks, (), {"domain": k})``.
    """

    def __init__(
        self,
        domain_key: str = "domain",
        num_landmarks: list[int] | tuple[int, ...] | None = None,
        default_domain: int = 0,
        image_key: str = "image",
        landmarks_key: str = "landmarks",
        memory_format: str | None = None,
    ) -> None:
        super().__init__(image_key, landmarks_key, None, memory_format)
        self.domain_key = domain_key
        self.domain_landmarks = None if num_landmarks is None else [int(n) for n in num_landmarks]
        self.default_domain = int(default_domain)

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict[str, int]]:
        image, landmarks = super().__call__(batchdata, device, non_blocking, **kwargs)
        domains = batchdata.get(self.domain_key) if isinstance(batchdata, Mapping) else None
        if domains is None:
            domain = self.default_domain
        else:
            values = sorted({int(d) for d in torch.as_tensor(domains).flatten().tolist()})
            if len(values) != 1:
                raise ValueError(
                    f"PrepareDomainBatch: a batch must hold one domain, got domains {values} (images {_names(image)})."
                )
            domain = values[0]
        if self.domain_landmarks is not None:
            if not 0 <= domain < len(self.domain_landmarks):
                raise ValueError(
                    f"PrepareDomainBatch: domain {domain} is not one of the model's {len(self.domain_landmarks)} domains "
                    f"(images {_names(image)})."
                )
            if landmarks is not None and landmarks.shape[1] != self.domain_landmarks[domain]:
                raise ValueError(
                    f"PrepareDomainBatch: {landmarks.shape[1]} landmarks per image, domain {domain} predicts "
                    f"{self.domain_landmarks[domain]} (images {_names(image)})."
                )
        return image, landmarks, (), {"domain": domain}


def lower_is_better(current: float, prev: float) -> bool:
    """``metric_cmp_fn`` for evaluators whose key metric is an error (MRE): True when ``current`` improves on ``prev``.

    MONAI starts ``best_metric`` at -1, which no error can beat with ``<``; a negative ``prev`` means "none yet".
    """
    return prev < 0 or current < prev


def _names(image: torch.Tensor) -> list[str]:
    """File names of a batched MetaTensor (for error messages)."""
    if isinstance(image, MetaTensor):
        names = image.meta.get("filename_or_obj")
        if names is not None:
            return [str(n) for n in (names if isinstance(names, list | tuple) else [names])]
    return ["<unknown>"]
