"""Loaders that turn real, published brain datasets into the stimulus and brain contracts.

One module per format (e.g. ``meg_bids`` for MEG/EEG in BIDS through MNE-BIDS);
import the module directly, this package exports nothing itself.
"""
