"""Train the toy LM on CPU and save its checkpoints along the way.

Like Pythia, the trajectory is the product: the same seed gives the same
tokenizer, the same initial weights, the same batch order and so the same
checkpoints, each a full Hugging Face directory that any later stage loads
with ``brainphase.checkpoints.load_model``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from brainphase.checkpoints import log_spaced_steps, write_checkpoint_metadata
from brainphase.io import atomic_path, write_text
from brainphase.toylm.model import build_model
from brainphase.toylm.tokenizer import train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    checkpoints: dict[int, Path]  # step → checkpoint directory
    log: pd.DataFrame  # one row per optimiser step: step, tokens, loss, lr


def pack_documents(tokenizer, documents: Sequence[str], seq_len: int):
    """Encode each document as BOS … EOS, concatenate, and cut into ``seq_len`` windows.

    The ragged tail is dropped; windows cross document boundaries, as in
    Pythia's packed training data.
    """
    import torch

    encoded = tokenizer(list(documents), add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream = [t for ids in encoded for t in (bos, *ids, eos)]
    n_windows = len(stream) // seq_len
    if n_windows == 0:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than one window of seq_len={seq_len}")
    return torch.tensor(stream[: n_windows * seq_len], dtype=torch.long).view(n_windows, seq_len)


def learning_rate(step: int, total: int, peak: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``min_ratio × peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_order(n_windows: int, batch_size: int, steps: int, seed: int):
    """Window indices for every step: shuffled epochs from a seeded generator."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    needed = steps * batch_size
    order = torch.cat([torch.randperm(n_windows, generator=generator) for _ in range(-(-needed // n_windows))])
    return order[:needed].view(steps, batch_size)


def save_checkpoint(model, tokenizer, directory: str | os.PathLike, model_name: str, step: int, tokens: int) -> Path:
    """Write one checkpoint directory atomically: weights, config, tokenizer, brainphase.json."""
    directory = Path(directory)
    with atomic_path(directory, directory=True) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a checkpoint should be readable like any output
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_checkpoint_metadata(tmp, model=model_name, revision=f"step{step}", step=step, tokens=tokens,
                                  source="train")
    return directory


def train_toy_lm(
    documents: Sequence[str],
    out_dir: str | os.PathLike,
    model_name: str = "toylm",
    steps: int = 1000,
    checkpoint_steps: Sequence[int] | None = None,
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    seed: int = 0,
    n_threads: int | None = None,
    log_every: int = 50,
    vocab_size: int = 1000,
    min_frequency: int = 2,
    n_layers: int = 4,
    d_model: int = 128,
    n_heads: int = 4,
    d_ff: int = 512,
    max_position: int = 256,
    tokenizer=None,
) -> TrainResult:
    """Train a tokenizer (unless given) and a Llama-style LM; save ``out_dir/step{N}/`` checkpoints.

    Step N's checkpoint holds the weights after N optimiser updates (step 0 =
    the initialisation) and records ``tokens = N × batch_size × seq_len``.
    Also writes ``out_dir/train_log.tsv`` (step, tokens, loss, lr).
    """
    import torch

    out_dir = Path(out_dir)
    if checkpoint_steps is None:
        checkpoint_steps = log_spaced_steps(steps, min(12, steps + 1))
    checkpoint_steps = sorted(set(int(s) for s in checkpoint_steps))
    if checkpoint_steps and not 0 <= checkpoint_steps[0] <= checkpoint_steps[-1] <= steps:
        raise ValueError(f"checkpoint_steps must lie in [0, steps={steps}], got {checkpoint_steps}")
    if seq_len > max_position:
        raise ValueError(f"seq_len ({seq_len}) exceeds max_position ({max_position})")
    warmup = max(1, steps // 20) if warmup_steps is None else max(1, warmup_steps)
    tokens_per_step = batch_size * seq_len

    previous_threads = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        if tokenizer is None:
            tokenizer = train_tokenizer(documents, vocab_size=vocab_size, min_frequency=min_frequency)
        tokenizer.model_max_length = max_position
        windows = pack_documents(tokenizer, documents, seq_len)
        logger.info("corpus: %d documents, %d windows of %d tokens (%.2fM tokens); %d steps = %.1f epochs",
                    len(documents), len(windows), seq_len, windows.numel() / 1e6, steps,
                    steps * batch_size / len(windows))
        order = batch_order(len(windows), batch_size, steps, seed)

        model = build_model(len(tokenizer), n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                            max_position=max_position, seed=seed, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        # Weight decay on matrices only: decaying norms' gains pulls them toward zero for no benefit.
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)

        saved: dict[int, Path] = {}
        if 0 in checkpoint_steps:
            saved[0] = save_checkpoint(model, tokenizer, out_dir / "step0", model_name, 0, 0)
        rows = []
        model.train()
        start = time.perf_counter()
        for step in range(1, steps + 1):
            current_lr = learning_rate(step - 1, steps, lr, warmup, min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            batch = windows[order[step - 1]]
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            rows.append((step, step * tokens_per_step, loss.item(), current_lr))
            if step in checkpoint_steps:
                saved[step] = save_checkpoint(model, tokenizer, out_dir / f"step{step}", model_name, step,
                                              step * tokens_per_step)
            if log_every and (step % log_every == 0 or step == steps):
                elapsed = time.perf_counter() - start
                logger.info("step %d/%d loss %.4f lr %.2e | %.0f tokens/s | ETA %.0f s", step, steps, rows[-1][2],
                            current_lr, step * tokens_per_step / elapsed, elapsed / step * (steps - step))
    finally:
        torch.set_num_threads(previous_threads)

    log = pd.DataFrame(rows, columns=["step", "tokens", "loss", "lr"])
    write_text(log.to_csv(sep="\t", index=False), out_dir / "train_log.tsv")
    return TrainResult(checkpoints=saved, log=log)
