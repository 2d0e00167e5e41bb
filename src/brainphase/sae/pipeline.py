"""One checkpoint's SAE: train on a layer's token activations, score it, describe its features.

Arrays and tables in, results out; the workflow script does the file I/O.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .features import classify_features, contexts, feature_shares, top_activations
from .splice import ce_loss_recovered, windows
from .train import SAETrainConfig, encode_rows, evaluate_sae, split_documents, train_sae

logger = logging.getLogger(__name__)

LANGUAGE_LABELS = ("ja", "en", "mixed")
GRANULARITY_LABELS = ("token", "concept_synonym", "concept_related", "unrelated")


def token_table(columns: dict, stimuli: pd.DataFrame, dictionary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cached token: where it is, what it is, and the word's truth where known.

    ``columns`` are the token-pooled activation file's per-token columns
    (:func:`brainphase.contracts.activations.read_token_table`): unit_rows
    (rows of ``stimuli``), token_ids, positions, tokens; ``stimuli`` the
    word-level stimulus set (its concept and category columns are the demo
    world's truth); ``dictionary`` (word, concept, category) supplies them for
    a real corpus.
    """
    rows = np.asarray(columns["unit_rows"], dtype=np.int64)
    n = len(rows)
    for key in ("token_ids", "positions", "tokens"):
        if len(columns.get(key, ())) != n:
            raise ValueError(f"activation columns {key!r} must give one entry per token row ({n}); "
                             "re-extract the corpus with token pooling")
    if n and (rows.min() < 0 or rows.max() >= len(stimuli)):
        raise ValueError(f"token rows point outside the stimulus set's {len(stimuli)} words; the activations are "
                         "stale, rerun them")
    w = stimuli.reset_index(drop=True).iloc[rows]
    table = pd.DataFrame({
        "row": np.arange(n), "doc": w["run"].to_numpy(), "position": np.asarray(columns["positions"]),
        "token_id": np.asarray(columns["token_ids"]), "token": list(columns["tokens"]), "word": w["text"].to_numpy(),
        "lang": w["lang"].to_numpy() if "lang" in w else None,
    })
    # The word form that synonymy is judged on: the lemma where the stimulus set has one.
    table["form"] = w["lemma"].to_numpy() if "lemma" in w else table["word"].to_numpy()
    if dictionary is not None:
        d = dictionary.drop_duplicates("word").set_index("word")
        table["concept"] = table["word"].map(d["concept"])
        table["category"] = table["word"].map(d["category"])
    else:
        table["concept"] = w["concept"].to_numpy() if "concept" in w else np.nan
        table["category"] = w["category"].to_numpy() if "category" in w else np.nan
    # Function words and punctuation have no meaning to share.
    table["concept"] = pd.to_numeric(table["concept"], errors="coerce").where(lambda c: c >= 0)
    table["category"] = table["category"].where(~table["category"].isin(["", "punct"]))
    return table


def init_seed(seed: int, step: str) -> int:
    """The SAE's own seed at one checkpoint: independent initialisations per checkpoint.

    SAEs trained from one shared initialisation at consecutive checkpoints
    match by inheritance, not because the model kept its features; with a seed
    per (seed, checkpoint), consecutive checkpoints and two seeds at one
    checkpoint are compared on the same footing.
    """
    return zlib.crc32(f"{int(seed)}:{step}".encode()) % 2**31


@dataclass
class CheckpointSAE:
    sae: object
    history: pd.DataFrame
    metrics: dict
    features: pd.DataFrame
    contexts: pd.DataFrame


def train_config(cfg: dict, seed: int, device: str) -> SAETrainConfig:
    keys = ("expansion", "k", "k_aux", "aux_coef", "lr", "batch_size", "epochs", "warmup_steps", "dead_tokens")
    return SAETrainConfig(**{k: cfg[k] for k in keys}, seed=seed, device=device)


def run_checkpoint_sae(activations, tokens: pd.DataFrame, cfg: dict, seed: int, load_lm=None,
                       site: str = "resid", layer: int = 0, device: str = "cpu") -> CheckpointSAE:
    """Train, evaluate (FVU, L0, dead fraction, CE loss recovered) and classify features.

    ``activations`` is (n_tokens × d), typically a float16 memmap; ``tokens``
    its :func:`token_table`. ``load_lm()`` returns ``(model, tokenizer)``; it
    is called once training is done, so the language model's weights and the
    SAE's training state are never in memory together, and the model is
    dropped after the CE metrics. Without it the CE metrics are NaN.
    """
    import torch

    split = split_documents(tokens["doc"].to_numpy(), tuple(cfg["split"]), seed=cfg["seed"])
    sae, history = train_sae(activations, split["train"], split["val"], train_config(cfg, seed, device), log=logger)
    metrics = {f"test_{k}": v for k, v in evaluate_sae(sae, activations, split["test"]).items()}
    metrics["val_fvu"] = evaluate_sae(sae, activations, split["val"])["fvu"]
    metrics["n_latents"] = sae.W_dec.shape[1]
    metrics["train_tokens"] = len(split["train"])
    if load_lm is not None:
        model, tokenizer = load_lm()
        test_docs = tokens.iloc[split["test"]].sort_values(["doc", "position"]).groupby("doc", sort=False)
        sequences = windows([g["token_id"].tolist() for _, g in test_docs], tokenizer.bos_token_id,
                            int(model.config.max_position_embeddings))
        sae_device = next(sae.parameters()).device

        def reconstruct(h):
            x = h.float().to(sae_device)
            norm = x.norm(dim=-1, keepdim=True)
            flat = (x / norm.clamp_min(1e-8)).reshape(-1, x.shape[-1])
            x_hat = sae(flat)[0].reshape(x.shape) * norm
            return x_hat.to(h.device)

        with torch.no_grad():
            metrics.update(ce_loss_recovered(model, sequences, reconstruct, site, layer, tokenizer.bos_token_id))
        del model, tokenizer
    values, indices = encode_rows(sae, activations, split["test"])
    top = top_activations(values, indices, sae.W_dec.shape[1], n_top=cfg["n_top"])
    top["row"] = split["test"][top["row"].to_numpy()]  # test-set positions → token rows
    ctx = contexts(top, tokens)
    has_truth = tokens["concept"].notna().any()
    features = classify_features(ctx, sae.W_dec.shape[1], lang_threshold=cfg["language_threshold"],
                                 gran_threshold=cfg["granularity_threshold"], min_examples=cfg["min_examples"],
                                 has_truth=has_truth)
    for column, labels in (("language", LANGUAGE_LABELS), ("granularity", GRANULARITY_LABELS)):
        shares = feature_shares(features, column)
        for label in labels:
            metrics[f"share_{column}_{label}"] = float(shares.get(label, 0.0))
    metrics["n_classified"] = int((~features["granularity"].isin(["rare", "none", "unlabelled"])).sum())
    return CheckpointSAE(sae, history, metrics, features, ctx)
