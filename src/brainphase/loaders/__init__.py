"""Loaders that turn real, published brain datasets into the stimulus and brain contracts.

One module per format: ``meg_bids`` (MEG/EEG in BIDS through MNE-BIDS),
``lebel`` (LeBel et al. 2023, OpenNeuro ds003020 derivative responses and
TextGrids) and ``bids_fmri`` (BOLD NIfTI runs in BIDS with word events, masked
with nilearn). The two fMRI loaders return ``lebel.LoadedFMRI`` (stimuli, runs,
tr, coords). Import the modules directly; this package exports nothing itself.
"""
