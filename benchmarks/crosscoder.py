"""Benchmark the brain-LM crosscoder's training against the plain PyTorch loop a user would write.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/crosscoder.py

No library trains a crosscoder between two differently sized sources (a brain's
voxels and an LM's residual stream): dictionary_learning's CrossCoder reads
stacked layers of one width. What a user would write instead is the textbook
TopK step in PyTorch: dense pre-activations, ``torch.topk``, codes scattered
into a dense matrix, both reconstructions, squared error per side, AuxK on the
dead latents, Adam. The baseline below is that loop, given the same initial
weights, batch order and settings as ours (``train_crosscoder``), so both
must end at the same validation loss.

Data: 3,000 TRs of 4,000 voxels and a 512-wide LM side driven by 48 planted
shared sources plus noise, 512 latents, k 16, k_aux 64, batches of 256, 6
epochs, 1 thread by default (``--threads``). Timings are the best of
``--repeats`` interleaved rounds.

It records the rate (TR x (voxels + LM width) x latents per second of one
epoch) in ``benchmarks/throughput.json``, from which the dry-run plan times
the crosscoder jobs of a study.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

N_TRS, N_VOXELS, D_LM, N_SOURCES = 3000, 4000, 512, 48
D_LATENT, K, K_AUX, BATCH, EPOCHS = 512, 16, 64, 256, 6


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((N_TRS, N_SOURCES), dtype=np.float32) * (rng.random((N_TRS, N_SOURCES)) < 0.2)
    brain = s @ rng.standard_normal((N_SOURCES, N_VOXELS), dtype=np.float32)
    lm = s @ rng.standard_normal((N_SOURCES, D_LM), dtype=np.float32)
    brain += rng.standard_normal(brain.shape, dtype=np.float32)
    lm += 0.5 * rng.standard_normal(lm.shape, dtype=np.float32)
    # Mean row norm 1 on both sides, as the job scales them.
    brain /= np.linalg.norm(brain, axis=1).mean()
    lm /= np.linalg.norm(lm, axis=1).mean()
    return brain, lm


def plain_loop(x_brain, x_lm, train_rows, val_rows, init: dict, seed: int) -> float:
    """The textbook TopK crosscoder loop; returns the best validation loss."""
    import torch

    W_b = torch.nn.Parameter(init["W_brain"].clone())
    W_l = torch.nn.Parameter(init["W_lm"].clone())
    b = torch.nn.Parameter(init["b_enc"].clone())
    opt = torch.optim.Adam([W_b, W_l, b], lr=1e-3)
    xb_all, xl_all = torch.from_numpy(x_brain), torch.from_numpy(x_lm)
    rng = np.random.default_rng(seed)
    dead = torch.zeros(D_LATENT, dtype=torch.bool)

    def forward(xb, xl):
        pre = xb @ W_b + xl @ W_l + b
        vals, idx = pre.topk(K, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        return z @ W_b.T, z @ W_l.T, z, pre

    best = math.inf
    for _ in range(EPOCHS):
        order = train_rows[rng.permutation(len(train_rows))]
        fired = torch.zeros(D_LATENT, dtype=torch.bool)
        for i in range(0, len(order), BATCH):
            rows = torch.from_numpy(order[i:i + BATCH])
            xb, xl = xb_all[rows], xl_all[rows]
            hb, hl, z, pre = forward(xb, xl)
            loss = (hb - xb).pow(2).sum(-1).mean() + (hl - xl).pow(2).sum(-1).mean()
            if dead.any():
                masked = pre.masked_fill(~dead, -math.inf)
                vals, idx = masked.topk(min(K_AUX, int(dead.sum())), dim=-1)
                z_aux = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
                eb, el = xb - hb.detach(), xl - hl.detach()
                loss = loss + (1 / 32) * ((z_aux @ W_b.T - eb).pow(2).sum(-1).mean()
                                          + (z_aux @ W_l.T - el).pow(2).sum(-1).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            fired |= (z > 0).any(0)
        dead = ~fired
        with torch.no_grad():
            vb, vl = xb_all[torch.from_numpy(val_rows)], xl_all[torch.from_numpy(val_rows)]
            hb, hl, _, _ = forward(vb, vl)
            best = min(best, ((hb - vb).pow(2).sum(-1).mean() + (hl - vl).pow(2).sum(-1).mean()).item())
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/throughput.json")
    args = parser.parse_args(argv)
    from _threads import limit_threads

    limit_threads(args.threads)
    import torch

    from brainphase import throughput
    from brainphase.crosscoder.model import BrainLMCrosscoder
    from brainphase.crosscoder.train import CrosscoderTrainConfig, train_crosscoder

    brain, lm = make_data()
    rows = np.random.default_rng(1).permutation(N_TRS)
    val_rows, train_rows = np.sort(rows[: N_TRS // 10]), np.sort(rows[N_TRS // 10:])
    cfg = CrosscoderTrainConfig(d_latent=D_LATENT, k=K, k_aux=K_AUX, lr=1e-3, batch_size=BATCH, epochs=EPOCHS,
                                patience=0, aux_coef=1 / 32, seed=0, device="cpu")
    init = {k: v.detach().clone() for k, v in BrainLMCrosscoder(N_VOXELS, D_LM, D_LATENT, K, seed=0).named_parameters()}

    fits = {"ours": lambda: train_crosscoder(brain, lm, train_rows, val_rows, cfg)[1]["val_loss"].min(),
            "plain PyTorch loop": lambda: plain_loop(brain, lm, train_rows, val_rows, init, cfg.seed)}
    times = {name: math.inf for name in fits}
    losses = {}
    for _ in range(args.repeats):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            losses[name] = float(fit())
            times[name] = min(times[name], time.perf_counter() - t0)
    for name in fits:
        print(f"{name:20s} {times[name]:7.2f} s   best validation loss {losses[name]:.5f}")
    rel = abs(losses["ours"] - losses["plain PyTorch loop"]) / losses["plain PyTorch loop"]
    print(f"relative difference of the best validation losses: {rel:.2e}")
    assert rel < 1e-3, rel

    work = EPOCHS * len(train_rows) * (N_VOXELS + D_LM) * D_LATENT
    if not args.no_record:
        throughput.record(throughput.default_path(), "crosscoder", "cpu", seconds=round(times["ours"], 3),
                          units_per_s=work / times["ours"], n_trs=len(train_rows), n_voxels=N_VOXELS, d_lm=D_LM,
                          d_latent=D_LATENT, epochs=EPOCHS, threads=args.threads, torch=torch.__version__)
    print(f"crosscoder training ({len(train_rows)} TRs x ({N_VOXELS} voxels + {D_LM}) -> {D_LATENT} latents, "
          f"{EPOCHS} epochs): ours {times['ours']:.2f}s, plain PyTorch loop {times['plain PyTorch loop']:.2f}s, "
          f"ratio={times['plain PyTorch loop'] / times['ours']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
