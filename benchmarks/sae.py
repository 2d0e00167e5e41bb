"""Benchmark our TopK SAE training against sae-lens on the same tokens.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/sae.py

sae-lens is never one of the project's dependencies: the first run creates
``benchmarks/.venv-saelens`` (git-ignored; ``benchmarks/_saelens_env.py``,
shared with the SAE export test) and installs into it
``sae-lens==6.54.12`` and ``torch==2.13.0`` (the project's
``constraints.txt``), a few minutes; ``--saelens-python`` points at another
interpreter that has them. The sae-lens side runs as a subprocess
(``benchmarks/_saelens_side.py``) that reads the tokens from .npy files and
writes its reconstruction of the test tokens and its timing.

Data: a planted dictionary, 8,192 unit atoms in d = 512; each token a
positive combination of 1-8 random atoms (weights 0.5-1.5) plus Gaussian
noise of 0.02 per dimension, stored as a float16 memmap like the activation
cache, each row scaled to unit norm (what ``train_sae`` trains on and what
sae-lens is given). 196,608 training tokens (one pass), 4,096 validation
tokens (ours only: four validations, and its best-validation checkpoint),
16,384 test tokens.

Both sides: 8,192 latents, k = 32, batch 1,024, Adam lr 0.004 (the demo's)
with a linear warm-up of 19 steps (ours shortens it on a short run; sae-lens
is then given the same), gradient clipping at norm 1, AuxK on (256 dead
latents, sae-lens's d_in / 2; dead after 32 steps = 32,768 tokens without
firing; the loss weights are each tool's own: ours 1/32 on the residual's
FVU, sae-lens 1.0 on its MSE), float32,
the same number of threads (``--threads``, default 1). Each tool keeps its own
initialisation. Timings are each training call alone (ours ``train_sae``,
including its reads from the memmap and its validations; sae-lens
``SAETrainer.fit`` on an in-memory iterator), best of ``--repeats`` interleaved
rounds.

Check: the test FVU, Σ‖x − x̂‖² / Σ‖x − x̄‖² in float64 over the test tokens
from each side's reconstruction: ours must be at most sae-lens's (exit 1
otherwise). Both sides are seeded, so a rerun on the same machine repeats
the FVUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _saelens_env import saelens_python

HERE = Path(__file__).resolve().parent
D_IN, N_LATENTS, K, BATCH, LR, WARMUP, DEAD_WINDOW = 512, 8192, 32, 1024, 0.004, 19, 32


def make_tokens(n: int, seed: int = 0, n_atoms: int = N_LATENTS, max_active: int = 8, noise: float = 0.02):
    """Planted-dictionary tokens (n × D_IN, float16) and the atoms."""
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((n_atoms, D_IN)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    x = np.empty((n, D_IN), np.float16)
    for lo in range(0, n, 8192):
        m = min(8192, n - lo)
        which = rng.integers(0, n_atoms, (m, max_active))
        on = np.arange(max_active) < rng.integers(1, max_active + 1, m)[:, None]
        coef = (rng.uniform(0.5, 1.5, (m, max_active)) * on).astype(np.float32)
        x[lo:lo + m] = np.einsum("nk,nkd->nd", coef, atoms[which]) + noise * rng.standard_normal((m, D_IN))
    return x, atoms


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    x, x_hat = x.astype(np.float64), x_hat.astype(np.float64)
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def run_ours(acts, rows, steps, threads):
    import torch

    from brainphase.sae import SAETrainConfig, train_sae

    cfg = SAETrainConfig(expansion=N_LATENTS // D_IN, k=K, k_aux=D_IN // 2, aux_coef=1 / 32, lr=LR,
                         batch_size=BATCH, epochs=1, warmup_steps=WARMUP, dead_tokens=DEAD_WINDOW * BATCH,
                         val_every=steps // 4, seed=0, device="cpu", dtype="float32")
    start = time.perf_counter()
    sae, history = train_sae(acts, rows["train"], rows["val"], cfg)
    seconds = time.perf_counter() - start
    assert torch.get_num_threads() == threads
    return sae, history, seconds


def run_saelens(python, work: Path, steps, threads, warmup):
    cfg = {"d_in": D_IN, "n_latents": N_LATENTS, "k": K, "batch_size": BATCH, "lr": LR, "warmup_steps": warmup,
           "dead_window_steps": DEAD_WINDOW, "steps": steps, "seed": 0, "threads": threads}
    (work / "config.json").write_text(json.dumps(cfg))
    env = {**os.environ, "TQDM_DISABLE": "1", "WANDB_MODE": "disabled",
           **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    done = subprocess.run([python, str(HERE / "_saelens_side.py"), str(work)], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"sae-lens side failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads((work / "result.json").read_text()), np.load(work / "x_hat.npy")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--train-tokens", type=int, default=192 * BATCH)
    parser.add_argument("--saelens-python", help="an interpreter with sae-lens 6.x (default: create the venv)")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/throughput.json")
    args = parser.parse_args(argv)
    python = saelens_python(args.saelens_python)

    from _threads import limit_threads

    limit_threads(args.threads)
    import torch

    from brainphase import throughput
    from brainphase.sae import normalize_tokens

    steps = args.train_tokens // BATCH
    n_train, n_val, n_test = steps * BATCH, 4096, 16384
    x, _ = make_tokens(n_train + n_val + n_test)
    rows = {"train": np.arange(n_train), "val": np.arange(n_train, n_train + n_val),
            "test": np.arange(n_train + n_val, len(x))}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        acts = np.lib.format.open_memmap(work / "acts.npy", mode="w+", dtype=np.float16, shape=x.shape)
        acts[:] = x
        acts.flush()
        acts = np.load(work / "acts.npy", mmap_mode="r")
        unit = normalize_tokens(torch.from_numpy(x.astype(np.float32))).numpy()
        np.save(work / "train.npy", unit[rows["train"]])
        np.save(work / "test.npy", unit[rows["test"]])
        test = unit[rows["test"]]
        del x, unit
        print(f"threads: {args.threads}; {n_train} training tokens ({steps} steps of {BATCH}), d {D_IN}, "
              f"{N_LATENTS} latents, k {K}; best of {args.repeats} interleaved rounds", flush=True)
        times = {"ours": [], "sae-lens": []}
        for _ in range(args.repeats):
            sae, history, seconds = run_ours(acts, rows, steps, args.threads)
            times["ours"].append(seconds)
            # The warm-up ours used (shortened on a run too short for it), so that both schedules match.
            theirs, x_hat_theirs = run_saelens(python, work, steps, args.threads, history.attrs["warmup_steps"])
            times["sae-lens"].append(theirs["seconds"])
        with torch.no_grad():
            x_hat_ours = sae(torch.from_numpy(test))[0].numpy()

    t_ours, t_theirs = min(times["ours"]), min(times["sae-lens"])
    fvu_ours, fvu_theirs = fvu(test, x_hat_ours), fvu(test, x_hat_theirs)
    dead_ours = int(round(history["dead_fraction"].iloc[-1] * N_LATENTS))
    print(f"{'':10s} {'train (s)':>10s} {'tokens/s':>10s} {'test FVU':>9s} {'dead at end':>12s}")
    print(f"{'ours':10s} {t_ours:10.1f} {n_train / t_ours:10.0f} {fvu_ours:9.4f} {dead_ours:12d}")
    print(f"{'sae-lens':10s} {t_theirs:10.1f} {n_train / t_theirs:10.0f} {fvu_theirs:9.4f} "
          f"{theirs['dead_latents']:12d}")
    if theirs["tokens"] != n_train:
        sys.exit(f"sae-lens trained on {theirs['tokens']} tokens, ours on {n_train}")
    print(f"ours: validation FVU {history['val_fvu'].dropna().round(4).tolist()}; "
          f"undertrained={history.attrs['undertrained']} (fall ratio {history.attrs['fall_ratio']:.2f})")
    if fvu_ours > fvu_theirs:
        print(f"FAIL: our test FVU {fvu_ours:.4f} is above sae-lens's {fvu_theirs:.4f}")
        return 1
    if not args.no_record:
        throughput.record(throughput.default_path(), "sae", "cpu", tokens_per_s=n_train / t_ours, d_in=D_IN,
                          n_latents=N_LATENTS, k=K, batch_size=BATCH, test_fvu=fvu_ours, seconds=t_ours,
                          tokens=n_train, threads=args.threads)
    shape = f"sae training ({n_train} tokens, d {D_IN} x {N_LATENTS} latents, k {K}, batch {BATCH})"
    print(f"{shape}: ours {t_ours:.1f}s, sae-lens {t_theirs:.1f}s, ratio={t_theirs / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
