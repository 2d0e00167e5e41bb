"""Benchmark items for probing: the fixed train/test split, the answer matrix, matching to activations."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from brainphase.contracts.stimuli import DataError


def split_items(n_items: int, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train/test split of benchmark items, fixed by ``seed``.

    The same seed gives the same split for every checkpoint and layer, so
    probing scores along training are compared on the same test items.

    Returns
    -------
    train_idx, test_idx : sorted int arrays, disjoint, covering ``range(n_items)``
    """
    n_items = int(n_items)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(n_items * test_fraction))
    if n_test < 1 or n_test >= n_items:
        raise ValueError(f"{n_items} items cannot be split with test_fraction={test_fraction}")
    perm = np.random.default_rng(seed).permutation(n_items)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def answer_matrix(targets: np.ndarray, n_choices: int) -> np.ndarray:
    """One-hot answer matrix: 1 at the correct choice of each item, 0 elsewhere.

    Parameters
    ----------
    targets : int array (n_items,), index of the correct choice
    n_choices : number of choices per item (4 for MMLU, 5 for CSQA)

    Returns
    -------
    array (n_items, n_choices), float64
    """
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError("targets must be 1-D")
    if targets.size and (targets.min() < 0 or targets.max() >= n_choices):
        raise ValueError(f"targets must lie in [0, {n_choices})")
    A = np.zeros((targets.size, int(n_choices)), dtype=np.float64)
    A[np.arange(targets.size), targets.astype(int)] = 1.0
    return A


class AlignedItems(NamedTuple):
    """Benchmark items matched to the rows of an activation file.

    items : the stimulus rows that have activations, in the file's row order.
    train_idx, test_idx : row indices of ``items``; the split is drawn over the
        whole stimulus set (so dropping an over-long item moves no other item
        between train and test) and restricted to the kept items.
    n_dropped : items without activations (longer than the model's positions).
    """

    items: pd.DataFrame
    train_idx: np.ndarray
    test_idx: np.ndarray
    n_dropped: int


def align_items(items, meta: dict, test_fraction: float, seed: int, where: str = "activations") -> AlignedItems:
    """Match the stimulus table ``items`` to an activation file's ``meta`` by unit id.

    Every stimulus unit must be either a row of the file (``unit_ids``) or
    listed as dropped (``dropped_unit_ids``); anything else means the cache
    and the stimulus set disagree (stale cache) and raises.
    """
    from brainphase.contracts.stimuli import DataError

    kept = [str(u) for u in meta["unit_ids"]]
    dropped = [str(u) for u in meta.get("dropped_unit_ids", [])]
    ids = items["unit_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: the stimulus set repeats unit ids; rebuild it")
    if set(kept) & set(dropped) or set(kept) | set(dropped) != set(ids) or len(kept) + len(dropped) != len(ids):
        raise DataError(f"{where}: its unit ids (kept + dropped) differ from the stimulus set's; the activation "
                        f"cache is stale — delete it and rerun")
    row_of = {u: i for i, u in enumerate(ids)}
    kept_rows = np.array([row_of[u] for u in kept], dtype=int)
    pos = np.full(len(ids), -1)
    pos[kept_rows] = np.arange(len(kept))
    train_all, test_all = split_items(len(ids), test_fraction, seed)
    train = np.sort(pos[train_all][pos[train_all] >= 0])
    test = np.sort(pos[test_all][pos[test_all] >= 0])
    if len(train) < 2 or len(test) < 2:
        raise DataError(f"{where}: {len(kept)} items kept ({len(dropped)} dropped as over-long) leave "
                        f"{len(train)} training and {len(test)} test items; too few to probe")
    return AlignedItems(items.iloc[kept_rows].reset_index(drop=True), train, test, len(dropped))
