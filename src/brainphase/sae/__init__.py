"""TopK sparse autoencoders on token activations.

The names below load their submodule on first use (PEP 562), so that a job
importing ``brainphase.sae.plots`` or ``.matching`` runs without torch.
"""

import importlib

_SUBMODULE = {
    "auxk_loss": "loss", "auxk_reconstruction": "loss", "normalized_mse": "loss",
    "TopKSAE": "model", "geometric_median": "model", "load_sae": "model", "save_sae": "model",
    "SAETrainConfig": "train", "encode_rows": "train", "evaluate_sae": "train", "normalize_tokens": "train",
    "split_documents": "train", "train_sae": "train",
}
__all__ = sorted(_SUBMODULE)


def __getattr__(name):
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_SUBMODULE[name]}", __name__), name)
