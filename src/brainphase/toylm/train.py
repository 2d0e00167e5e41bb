"""Train the toy LM on CPU and save its checkpoints along the way.

Like Pythia, the trajectory is the product: the same seed gives the same
tokenizer, the same initial weights, the same batch order and so the same
checkpoints, each a full Hugging Face directory that any later stage loads
with ``brainphase.contracts.checkpoint.load_model``.
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

from brainphase.contracts.checkpoint import write_checkpoint_metadata
from brainphase.sources.train import log_spaced_steps
from brainphase.io import atomic_path, write_text
from brainphase.runtime import torch_threads
from brainphase.toylm.model import build_model
from brainphase.toylm.tokenizer import train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class ToyLMTrainConfig:
    """Settings of one toy-LM training run: tokenizer, architecture, optimiser and checkpoints."""

    steps: int = 1000
    """Optimiser updates."""
    checkpoint_steps: Sequence[int] | None = None
    """Steps whose weights are saved (0 = the initialisation); None: about 12 log-spaced steps."""
    batch_size: int = 16
    """Windows per step."""
    seq_len: int = 128
    """Tokens per window."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    warmup_steps: int | None = None
    """Steps of linear warm-up before the cosine decay; None: 5% of ``steps`` (at least 1)."""
    min_lr_ratio: float = 0.1
    """Learning rate at the end of the cosine decay, as a fraction of ``lr``."""
    weight_decay: float = 0.1
    """AdamW weight decay of the weight matrices (norm gains are not decayed)."""
    grad_clip: float = 1.0
    """Largest gradient norm."""
    seed: int = 0
    """Seeds the initial weights and the batch order."""
    n_threads: int | None = None
    """Torch threads while training; None: leave the count as it is."""
    log_every: int = 50
    """Steps between progress log lines; 0: none."""
    vocab_size: int = 1000
    """Byte-level BPE vocabulary size (special tokens included)."""
    min_frequency: int = 2
    """Fewest occurrences of a pair for a BPE merge."""
    n_layers: int = 4
    """Transformer blocks."""
    d_model: int = 128
    """Width of the residual stream."""
    n_heads: int = 4
    """Attention heads per block."""
    d_ff: int = 512
    """Width of the MLP's hidden layer."""
    max_position: int = 256
    """Longest sequence the model (and its tokenizer) accept."""

    def __post_init__(self):
        steps = self.checkpoints
        if steps and not 0 <= steps[0] <= steps[-1] <= self.steps:
            raise ValueError(f"checkpoint_steps must lie in [0, steps={self.steps}], got {steps}")
        if self.seq_len > self.max_position:
            raise ValueError(f"seq_len ({self.seq_len}) exceeds max_position ({self.max_position})")

    @classmethod
    def from_config(cls, train: dict, n_threads: int | None = None) -> ToyLMTrainConfig:
        """The settings of a model's ``train`` entry in the workflow config."""
        keys = ("steps", "batch_size", "seq_len", "lr", "seed", "vocab_size", "n_layers", "d_model", "n_heads",
                "d_ff", "max_position")
        return cls(**{k: train[k] for k in keys}, checkpoint_steps=train["checkpoints"],
                   warmup_steps=train["warmup"], n_threads=n_threads)

    @property
    def checkpoints(self) -> list[int]:
        """The checkpoint steps, sorted and unique."""
        if self.checkpoint_steps is None:
            return sorted(set(int(s) for s in log_spaced_steps(self.steps, min(12, self.steps + 1))))
        return sorted(set(int(s) for s in self.checkpoint_steps))

    @property
    def warmup(self) -> int:
        """Warm-up steps actually used (at least 1)."""
        return max(1, self.steps // 20) if self.warmup_steps is None else max(1, self.warmup_steps)


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


def train_toy_lm(documents: Sequence[str], out_dir: str | os.PathLike, cfg: ToyLMTrainConfig,
                 model_name: str = "toylm", tokenizer=None) -> TrainResult:
    """Train a tokenizer (unless given) and a Llama-style LM; save ``out_dir/step{N}/`` checkpoints.

    Step N's checkpoint holds the weights after N optimiser updates (step 0 =
    the initialisation) and records ``tokens = N × batch_size × seq_len``.
    Also writes ``out_dir/train_log.tsv`` (step, tokens, loss, lr).
    """
    out_dir = Path(out_dir)
    with torch_threads(cfg.n_threads):
        if tokenizer is None:
            tokenizer = train_tokenizer(documents, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency)
        tokenizer.model_max_length = cfg.max_position
        windows = pack_documents(tokenizer, documents, cfg.seq_len)
        logger.info("corpus: %d documents, %d windows of %d tokens (%.2fM tokens); %d steps = %.1f epochs",
                    len(documents), len(windows), cfg.seq_len, windows.numel() / 1e6, cfg.steps,
                    cfg.steps * cfg.batch_size / len(windows))
        order = batch_order(len(windows), cfg.batch_size, cfg.steps, cfg.seed)
        model = build_model(len(tokenizer), n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                            d_ff=cfg.d_ff, max_position=cfg.max_position, seed=cfg.seed,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
        saved, rows = _train(model, tokenizer, windows, order, cfg, out_dir, model_name)
    log = pd.DataFrame(rows, columns=["step", "tokens", "loss", "lr"])
    write_text(log.to_csv(sep="\t", index=False), out_dir / "train_log.tsv")
    return TrainResult(checkpoints=saved, log=log)


def _optimizer(model, cfg: ToyLMTrainConfig):
    import torch

    # Weight decay on matrices only: decaying norms' gains pulls them toward zero for no benefit.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def _train(model, tokenizer, windows, order, cfg: ToyLMTrainConfig, out_dir: Path, model_name: str
           ) -> tuple[dict[int, Path], list[tuple]]:
    """The optimiser loop: checkpoints saved along the way, and one (step, tokens, loss, lr) row per step."""
    import torch

    optimizer = _optimizer(model, cfg)
    checkpoint_steps, warmup = cfg.checkpoints, cfg.warmup
    tokens_per_step = cfg.batch_size * cfg.seq_len
    saved: dict[int, Path] = {}
    if 0 in checkpoint_steps:
        saved[0] = save_checkpoint(model, tokenizer, out_dir / "step0", model_name, 0, 0)
    rows = []
    model.train()
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        current_lr = learning_rate(step - 1, cfg.steps, cfg.lr, warmup, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        batch = windows[order[step - 1]]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        rows.append((step, step * tokens_per_step, loss.item(), current_lr))
        if step in checkpoint_steps:
            saved[step] = save_checkpoint(model, tokenizer, out_dir / f"step{step}", model_name, step,
                                          step * tokens_per_step)
        if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.steps):
            elapsed = time.perf_counter() - start
            logger.info("step %d/%d loss %.4f lr %.2e | %.0f tokens/s | ETA %.0f s", step, cfg.steps, rows[-1][2],
                        current_lr, step * tokens_per_step / elapsed, elapsed / step * (cfg.steps - step))
    return saved, rows
