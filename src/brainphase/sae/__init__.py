"""TopK sparse autoencoders on token activations."""

from .loss import auxk_loss, auxk_reconstruction, normalized_mse
from .model import TopKSAE, geometric_median, load_sae, save_sae
from .train import SAETrainConfig, encode_rows, evaluate_sae, normalize_tokens, split_documents, train_sae

__all__ = [
    "SAETrainConfig", "TopKSAE", "auxk_loss", "auxk_reconstruction", "encode_rows", "evaluate_sae",
    "geometric_median", "load_sae", "normalize_tokens", "normalized_mse", "save_sae", "split_documents",
    "train_sae",
]
