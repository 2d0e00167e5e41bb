"""The embedded demo's tiny language model: tokenizer, architecture, training loop."""

from brainphase.toylm.model import build_model
from brainphase.toylm.tokenizer import train_tokenizer
from brainphase.toylm.train import ToyLMTrainConfig, TrainResult, train_toy_lm

__all__ = ["ToyLMTrainConfig", "TrainResult", "build_model", "train_tokenizer", "train_toy_lm"]
