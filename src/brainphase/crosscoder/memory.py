"""Peak memory of a crosscoder job, and where its brain responses live: in memory or in a file.

One formula serves the job (which chooses with it) and the dry-run plan
(which prints it). Terms, in bytes, float32 everywhere:

- ``BASE_BYTES``: the interpreter with numpy, pandas, h5py and torch loaded,
  and Snakemake's script preamble;
- the responses, n_trs × n_voxels × 4, when held in memory (nothing when they
  are streamed from the job's temporary file: reads go through the page cache);
- x_lm, n_trs × d_lm × 4, and the codes of the scored rows (at most n_trs × n_latents × 4);
- the parameters: the finished real fit, and the shuffled fit's parameters,
  gradients, two Adam moments and saved best copy, ``PARAMETER_COPIES`` ×
  (n_voxels + d_lm) × n_latents × 4;
- one batch: ``BATCH_COPIES`` × batch_size × (n_voxels + d_lm) × 4 for the
  gathered rows, reconstructions, residuals and their gradients, plus the
  latent-sized tensors (pre-activations, codes, AuxK) ``LATENT_COPIES`` ×
  batch_size × n_latents × 4. A batch tensor under ``HEAP_LIMIT`` comes from
  glibc's heap, which keeps freed batches and fragments over the epochs, so it
  counts ``HEAP_BATCH_COPIES`` times instead;
- ``FIXED_BYTES`` for the float64 blocks of z-scoring and scoring
  (``store.BLOCK_BYTES`` each) and BLAS buffers.

While the LM side is built, the word activations (``n_units`` × d_lm × 4)
are held too; they are released before the responses are read.
The constants are fits, rounded up, to the peak RSS (VmHWM) of whole jobs
on CPU (20k-60k voxels, 64-1024 latents, batches of 128-2048 TRs);
tests/test_crosscoder.py checks a job against this formula.
"""

from __future__ import annotations

BASE_BYTES = 512 * 2**20
FIXED_BYTES = 192 * 2**20
BATCH_COPIES = 7
HEAP_BATCH_COPIES = 16
# glibc's largest dynamic mmap threshold on 64-bit (malloc/malloc.c DEFAULT_MMAP_THRESHOLD_MAX): a larger
# block is always mapped and unmapped, so it goes back to the system when torch frees it.
HEAP_LIMIT = 32 * 2**20
LATENT_COPIES = 16
PARAMETER_COPIES = 8
F32 = 4


def crosscoder_peak_bytes(n_trs: int, n_voxels: int, d_lm: int, n_latents: int, batch_size: int,
                          budget_bytes: int | None = None, n_units: int = 0) -> int:
    """Peak resident bytes of one crosscoder job on these shapes, given its memory budget.

    With the budget (or without one) the responses stay in memory when that
    peak fits, else they are streamed from disk (:func:`streams_responses`);
    the result is the peak of the layout the job will choose.
    """
    streamed = _peak(n_trs, n_voxels, d_lm, n_latents, batch_size, n_units, in_memory=False)
    in_memory = streamed + n_trs * n_voxels * F32
    if budget_bytes is None or in_memory <= budget_bytes:
        return in_memory
    return streamed


def streams_responses(n_trs: int, n_voxels: int, d_lm: int, n_latents: int, batch_size: int,
                      budget_bytes: int | None, n_units: int = 0) -> bool:
    """Whether the job keeps its responses in a temporary file rather than in memory."""
    in_memory = crosscoder_peak_bytes(n_trs, n_voxels, d_lm, n_latents, batch_size, None, n_units)
    return budget_bytes is not None and in_memory > budget_bytes


def check_budget(n_trs: int, n_voxels: int, d_lm: int, n_latents: int, batch_size: int,
                 budget_bytes: int | None, n_units: int = 0) -> int:
    """The job's peak; a ValueError naming what to change when even streaming the responses exceeds the budget."""
    peak = crosscoder_peak_bytes(n_trs, n_voxels, d_lm, n_latents, batch_size, budget_bytes, n_units)
    if budget_bytes is not None and peak > budget_bytes:
        raise ValueError(
            f"the crosscoder needs about {peak / 2**30:.2f} GiB even with its responses streamed from disk "
            f"({n_trs} TRs x {n_voxels} voxels, d_lm {d_lm}, {n_latents} latents, batch {batch_size}) but its "
            f"budget is {budget_bytes / 2**30:.2f} GiB: raise mem_mb of the crosscoder rule (set-resources in "
            f"the profile's config.yaml), or lower crosscoder.batch_size or crosscoder.d_latent in the config")
    return peak


def _peak(n_trs, n_voxels, d_lm, n_latents, batch_size, n_units, in_memory: bool) -> int:
    width = n_voxels + d_lm
    held = BASE_BYTES + n_trs * d_lm * F32 + n_trs * n_latents * F32
    batch_copies = BATCH_COPIES if batch_size * width * F32 >= HEAP_LIMIT else HEAP_BATCH_COPIES
    training = (PARAMETER_COPIES * width * n_latents + batch_copies * batch_size * width
                + LATENT_COPIES * batch_size * n_latents) * F32 + FIXED_BYTES
    building_lm = n_units * d_lm * F32 + FIXED_BYTES
    return int(held + max(training, building_lm) + (n_trs * n_voxels * F32 if in_memory else 0))
