"""mlm: anatomical landmark detection in 2D and 3D medical images, built on MONAI."""

__version__ = "0.1.0"
