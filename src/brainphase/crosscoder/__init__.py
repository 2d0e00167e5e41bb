"""Brain–LM crosscoder: one sparse code of BOLD and the LM representation.

The names below load their submodule on first use (PEP 562), so that a job
importing ``brainphase.crosscoder.plots`` runs without torch.
"""

import importlib

_SUBMODULE = {
    "BrainLMCrosscoder": "model", "load_crosscoder": "model", "save_crosscoder": "model",
    "class_fractions": "scores", "evaluate_crosscoder": "scores", "latent_activations": "scores",
    "latent_classes": "scores", "reconstruction_r": "scores", "relative_decoder_norm": "scores",
    "CrosscoderTrainConfig": "train", "auxk_loss": "train", "scale_to_unit_norm": "train",
    "time_shuffle": "train", "train_crosscoder": "train",
}
__all__ = sorted(_SUBMODULE)


def __getattr__(name):
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_SUBMODULE[name]}", __name__), name)
