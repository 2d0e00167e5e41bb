"""Time-resolved (MEG/EEG) analyses: word-locked epochs and layer-latency alignment.

Import the modules directly (e.g. ``from brainphase.temporal.epochs import word_epochs``);
this package exports nothing itself, so importing it stays free of MNE.
"""
