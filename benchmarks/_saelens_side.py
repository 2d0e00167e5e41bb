"""The sae-lens side of ``benchmarks/sae.py`` and of the SAE export test, run in ``benchmarks/.venv-saelens``.

sae-lens is never a dependency of the project (``_saelens_env.py`` makes the
environment). Two modes::

    python _saelens_side.py WORKDIR
    python _saelens_side.py --load SAE_FOLDER WORKDIR

The second loads an SAE that brainphase exported (``SAE.load_from_disk``,
sae_lens/saes/sae.py), encodes and decodes ``WORKDIR/x.npy`` (float32 model
activations, one token a row) with sae-lens's own code, and writes
``codes.npy``, ``x_hat.npy`` (decode of the codes), ``forward.npy`` (its
``forward``), ``codes_folded.npy`` (the codes after ``fold_W_dec_norm``, which
SAEDashboard calls) and ``result.json`` (the loaded class and config). The first,
the benchmark's, is described below.

WORKDIR holds ``config.json`` (the shared settings), ``train.npy`` (the
normalised training tokens, float32, in memory like the in-memory iterator
a user would write) and ``test.npy``. Written back: ``x_hat.npy`` (its
reconstruction of the test tokens) and ``result.json`` (training seconds,
steps, tokens, dead latents at the end). The API is sae-lens 6.x's
``TopKTrainingSAE`` / ``TopKTrainingSAEConfig`` trained by ``SAETrainer``
(sae_lens/saes/topk_sae.py, sae_lens/training/sae_trainer.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def batches(train: np.ndarray, batch_size: int, seed: int):
    """Endless shuffled batches, a new permutation per pass (as our trainer draws them)."""
    import torch

    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(train))
        for lo in range(0, len(order) - batch_size + 1, batch_size):
            yield torch.from_numpy(train[order[lo:lo + batch_size]])


def main(workdir: str) -> int:
    work = Path(workdir)
    cfg = json.loads((work / "config.json").read_text())
    import torch

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    train = np.load(work / "train.npy")
    test = torch.from_numpy(np.load(work / "test.npy"))
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=cfg["d_in"], d_sae=cfg["n_latents"], k=cfg["k"],
                                                dtype="float32", device="cpu"))
    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg["steps"] * cfg["batch_size"], train_batch_size_samples=cfg["batch_size"],
        lr=cfg["lr"], lr_end=cfg["lr"], lr_warm_up_steps=cfg["warmup_steps"], dead_feature_window=cfg["dead_window_steps"],
        device="cpu", autocast=False, logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(trainer_cfg, sae, data_provider=batches(train, cfg["batch_size"], cfg["seed"]))
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    sae.eval()
    with torch.no_grad():
        x_hat = torch.cat([sae(test[lo:lo + 4096]) for lo in range(0, len(test), 4096)])
    np.save(work / "x_hat.npy", x_hat.numpy())
    (work / "result.json").write_text(json.dumps({
        "seconds": seconds, "steps": trainer.n_training_steps, "tokens": trainer.n_training_samples,
        "dead_latents": int(trainer.dead_neurons.sum()), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "aux_loss_coefficient": sae.cfg.aux_loss_coefficient}))
    return 0


def load(folder: str, workdir: str) -> int:
    import torch
    from sae_lens import SAE

    work = Path(workdir)
    sae = SAE.load_from_disk(folder)
    x = torch.from_numpy(np.load(work / "x.npy"))
    with torch.no_grad():
        codes = sae.encode(x)
        # decode undoes the rescaling of the encode call just before it (constant_norm_rescale keeps the norms).
        x_hat = sae.decode(codes)
        forward = sae(x)
        # What SAEDashboard does to an SAE before it reads its features.
        sae.fold_W_dec_norm()
        folded = sae.encode(x)
    for name, array in (("codes", codes), ("x_hat", x_hat), ("forward", forward), ("codes_folded", folded)):
        np.save(work / f"{name}.npy", array.numpy())
    cfg = sae.cfg.to_dict()
    (work / "result.json").write_text(json.dumps({
        "class": type(sae).__name__, "architecture": cfg["architecture"], "k": cfg["k"], "d_in": cfg["d_in"],
        "d_sae": cfg["d_sae"], "normalize_activations": cfg["normalize_activations"],
        "hook_name": sae.cfg.metadata.hook_name, "model_name": sae.cfg.metadata.model_name,
        "decoder_norm_max_deviation": float((sae.W_dec.norm(dim=-1) - 1).abs().max())}, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    if sys.argv[1] == "--load":
        raise SystemExit(load(sys.argv[2], sys.argv[3]))
    raise SystemExit(main(sys.argv[1]))
