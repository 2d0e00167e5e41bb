"""Both probes at every layer of one checkpoint's activations on one task's items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .choice import choice_probe
from .items import AlignedItems, align_items, answer_matrix
from .neurons import item_bootstrap, neuron_probe


def probe_task(acts: dict[str, np.ndarray], aligned: AlignedItems, n_boot: int, seed: int,
               log=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Both probes at every ``{site}.{layer}`` of ``acts``, plus the item bootstrap of the neuron probe.

    ``acts`` rows follow ``aligned.items``. Returns ``(summary, neurons,
    boot)``: summary has one row per (site, layer, metric) with metrics
    neuron_mean_r, choice_accuracy, choice_chance, choice_p_value; neurons one
    row per scored neuron (site, layer, neuron, r); boot one row per (site,
    layer, replicate) with the replicate's mean r (``value``). The bootstrap
    draws come from ``seed`` alone, so they are the same at every checkpoint.
    """
    items, train, test = aligned.items, aligned.train_idx, aligned.test_idx
    targets = items["target"].to_numpy().astype(int)
    n_choices = int(items["n_choices"].max())
    answers = answer_matrix(targets, n_choices)
    rows, neurons, boots = [], [], []
    for name in sorted(acts, key=lambda n: (n.split(".")[0], int(n.split(".")[1]))):
        a = acts[name]
        if a.shape[0] != len(items):
            raise ValueError(f"{name}: {a.shape[0]} rows for {len(items)} items")
        site, layer = name.split(".")[0], int(name.split(".")[1])
        nr = neuron_probe(answers, a, train, test)
        cp = choice_probe(a, targets, train, test, n_choices=n_choices, seed=seed)
        for metric, value in [("neuron_mean_r", nr.mean_r), ("choice_accuracy", cp.accuracy),
                              ("choice_chance", cp.chance), ("choice_p_value", cp.p_value)]:
            rows.append({"site": site, "layer": layer, "metric": metric, "value": float(value)})
        neurons.append(pd.DataFrame({"site": site, "layer": layer, "neuron": np.arange(len(nr.r)),
                                     "r": nr.r}).dropna())
        reps = item_bootstrap(a[test], nr.pred, n_boot, seed, nr.excluded)
        boots.append(pd.DataFrame({"site": site, "layer": layer, "replicate": np.arange(len(reps)),
                                   "value": reps}))
        if log is not None:
            log.info("%s: neuron mean r %.3f (bootstrap sd %.3f), choice accuracy %.3f (chance %.3f)", name,
                     nr.mean_r, np.nanstd(reps), cp.accuracy, cp.chance)
    return (pd.DataFrame(rows), pd.concat(neurons, ignore_index=True), pd.concat(boots, ignore_index=True))


def probe_checkpoint(items: pd.DataFrame, acts: dict[str, np.ndarray], meta: dict, model: str, step: str,
                     tokens: int, task: str, *, site: str, test_fraction: float, n_boot: int, seed: int,
                     where: str = "activations", log=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Probe every layer of ``site`` in one checkpoint's activation file on one task's items.

    ``items`` is the task's stimulus table, ``acts`` and ``meta`` the
    activation file (``{site}.{layer}`` arrays and their unit ids); ``where``
    names the file in errors. Returns the tables the workflow writes:
    ``(summary, neurons, boot)`` of :func:`probe_task`, each with the
    checkpoint's model, step, tokens and task; summary also with analysis,
    lang, n_items and n_dropped, neurons with lang.
    """
    acts = {k: v for k, v in acts.items() if k.split(".")[0] == site}
    if not acts:
        raise ValueError(f"{where}: no {site}.* tensors; probing.site is {site!r} — delete the "
                         f"file so the activations job re-extracts it")
    aligned = align_items(items, meta, test_fraction, seed, where=where)
    if aligned.n_dropped and log is not None:
        log.warning("%d of %d items of %s are longer than the model's context and were not probed",
                    aligned.n_dropped, len(items), task)
    summary, neurons, boot = probe_task(acts, aligned, n_boot, seed, log=log)
    common = {"model": model, "step": step, "tokens": int(tokens), "task": task}
    lang = items["lang"].iloc[0]
    return (summary.assign(analysis="probing", **common, lang=lang, n_items=len(aligned.items),
                           n_dropped=aligned.n_dropped),
            neurons.assign(**common, lang=lang),
            boot.assign(**common)[["model", "step", "tokens", "task", "site", "layer", "replicate", "value"]])
