"""Reading and writing landmark files (JSON, CSV, Slicer ``.fcsv``)."""

from .atomic import atomic_write_text
from .landmark_files import COORDINATE_SYSTEMS, LandmarkFile, read_landmark_file, write_landmark_file

__all__ = ["atomic_write_text", "COORDINATE_SYSTEMS", "LandmarkFile", "read_landmark_file", "write_landmark_file"]
