"""Brain–LM crosscoder: one sparse code of BOLD and the LM representation."""

from .model import BrainLMCrosscoder, load_crosscoder, save_crosscoder
from .scores import (class_fractions, evaluate_crosscoder, latent_activations, latent_classes,
                     reconstruction_r, relative_decoder_norm)
from .train import CrosscoderTrainConfig, auxk_loss, scale_to_unit_norm, time_shuffle, train_crosscoder

__all__ = [
    "BrainLMCrosscoder", "CrosscoderTrainConfig", "auxk_loss", "class_fractions", "evaluate_crosscoder",
    "latent_activations", "latent_classes", "load_crosscoder", "reconstruction_r", "relative_decoder_norm",
    "save_crosscoder", "scale_to_unit_norm", "time_shuffle", "train_crosscoder",
]
