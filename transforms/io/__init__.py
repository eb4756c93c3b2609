"""Reading and writing landmark files (JSON, CSV, Slicer ``.fcsv``)."""

from .landmark_files import COORDINATE_SYSTEMS, LandmarkFile, read_landmark_file, write_landmark_file

__all__ = ["COORDINATE_SYSTEMS", "LandmarkFile", "read_landmark_file", "write_landmark_file"]
