"""Loaders that turn real, published brain datasets into the stimulus and brain contracts.

One module per format: ``meg_bids`` (MEG/EEG in BIDS through MNE-BIDS),
``lebel`` (LeBel et al. 2023, OpenNeuro ds003020 derivative responses and
TextGrids, read with ``textgrid``) and ``bids_fmri`` (BOLD NIfTI runs in BIDS
with word events, masked with nilearn). Every loader returns a type of
``types`` (``LoadedFMRI`` or ``MEGBids``) and is registered in ``registry``;
``dataset`` loads one subject of any registered format. Import the modules
directly; this package exports nothing itself.
"""
