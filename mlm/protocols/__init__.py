"""Evaluation protocols of the papers: predictions on disk + a prepared datalist -> the papers' tables and curves.

A bundle's inference writes one ``<id>_landmarks.json`` per image to ``<output_dir>/predictions/``
(:func:`transforms.io.prediction_files.landmark_record`: world mm, LPS). This package matches those files to the
items of a prepared dataset's datalist (any dataset with the same landmark count and dimensionality), brings the
ground truth to world mm with the bundles' own transforms (:mod:`mlm.protocols.ground_truth`) and reports with
:mod:`mlm.metrics`:

- ``isbi2015``: the ISBI 2015 cephalometric challenge, one table per test set (``test1``: 150 images,
  ``test2``: 100), MRE +- SD and SDR at 2, 2.5, 3 and 4 mm, as in Wang et al. 2016 / Lindner et al. 2016 /
  Payer et al. 2019.
- ``hand``: Payer et al.'s hand X-ray 3-fold cross-validation: one prediction folder per fold, the point error
  normalised to a 50 mm wrist width (``mlm.data.hand_xray.WRIST_WIDTH_PAIR``, zero-based landmarks 1 and 5; GU2Net
  uses 0 and 4), PE median, mean +- SD and the outlier counts #O_r at 2, 4 and 10 mm over all folds and per fold.
  An image whose ground truth lacks one of the pair is left out and listed (as ``LandmarkReportHandler`` does).
- ``csi2014``: MICCAI CSI 2014 spine CT (Glocker et al. 2013; Payer et al. 2019): PE median, mean +- SD, #O_20mm
  and identification rate at 20 mm, for all vertebrae and per region (cervical, thoracic, lumbar, sacral), plus a
  per-vertebra table; one prediction folder per fold (or one for a test set).
- ``generic``: any datalist: MRE +- SD, median, SDR at the given radii (and the ID rate on request).

Every protocol writes (atomically, via :mod:`mlm.reports` and :mod:`mlm.visualize`) ``table.md``, ``table.csv``,
``summary.json``, ``per_landmark_<group>.csv``, ``errors_per_image.csv`` and ``cumulative_ipe.png``.
Conventions (DESIGN.md): missing ground truth is excluded; a missing prediction for a present landmark is a
failure (SDR, #O_r, ID rate) and is left out of the mean / SD / median; success at r is ``error <= r``.

Modules: ``settings`` (each protocol's radii and groups), ``predictions`` (prediction folders), ``ground_truth``
(datalist items in world mm), ``evaluation`` (groups and metrics), ``tables`` (Markdown and CSV tables),
``report`` (the files).
"""

from mlm.protocols.evaluation import evaluate_protocol
from mlm.protocols.ground_truth import PIXEL_ONLY_SUFFIXES, ground_truth_world
from mlm.protocols.predictions import read_prediction_file, read_predictions
from mlm.protocols.report import write_protocol_report
from mlm.protocols.settings import PROTOCOLS, ProtocolSettings, protocol_defaults
from mlm.protocols.tables import format_markdown, markdown_table, protocol_table

__all__ = [
    "PROTOCOLS",
    "ProtocolSettings",
    "protocol_defaults",
    "PIXEL_ONLY_SUFFIXES",
    "read_prediction_file",
    "read_predictions",
    "ground_truth_world",
    "evaluate_protocol",
    "format_markdown",
    "markdown_table",
    "protocol_table",
    "write_protocol_report",
]
