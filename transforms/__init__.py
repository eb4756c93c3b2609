"""Landmark-aware MONAI transforms (array and dictionary forms), depending on MONAI only."""
