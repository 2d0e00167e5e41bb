"""brainphase: follow a language model through its training checkpoints and compare it with the brain."""

__version__ = "0.1.0"
