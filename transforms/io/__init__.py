"""Reading and writing: landmark files (JSON, CSV, Slicer ``.fcsv``), prediction files, checked image loading, atomic
output."""

from .atomic import atomic_write, atomic_write_text, output_path
from .images import CheckedLoadImage, CheckedLoadImaged, check_image, colour_to_grey, is_colour_image
from .landmark_files import COORDINATE_SYSTEMS, LandmarkFile, read_landmark_file, write_landmark_file
from .prediction_files import PREDICTION_SUFFIX, landmark_record, read_prediction_file

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "output_path",
    "CheckedLoadImage",
    "CheckedLoadImaged",
    "check_image",
    "colour_to_grey",
    "is_colour_image",
    "COORDINATE_SYSTEMS",
    "LandmarkFile",
    "read_landmark_file",
    "write_landmark_file",
    "PREDICTION_SUFFIX",
    "landmark_record",
    "read_prediction_file",
]
