"""Cortical maps of per-voxel results: fsaverage surfaces for MNI-space data, pycortex flatmaps for a subject's
own surfaces."""
