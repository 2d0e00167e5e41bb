"""The study's science choices, as plain functions of the validated config dict.

Which models run which analyses, which stimulus sets each model reads, how each
set is pooled into one vector per unit, at which sites it is read, how a
dataset's units are resampled onto the brain's clock, and which checkpoints get
a second SAE seed or a feature card. The workflow (workflow/rules) only turns
these answers into file paths.
"""

from __future__ import annotations

from .config import dataset_entry, model_entry
from .sources import revisions

# The stimulus set the sparse autoencoders are trained on.
SAE_CORPUS = "sae_corpus"


def model_analyses(config: dict, model: str) -> list[str]:
    """Analyses ``model`` runs: its own ``analyses`` list, else the study's.

    A model entry may run fewer analyses than the study (the demo's second,
    smaller LM serves only the size sweep of the temporal analysis).
    """
    return model_entry(config, model).get("analyses", config["analyses"])


def models(config: dict, analysis: str | None = None) -> list[str]:
    """Configured models, or those that run ``analysis``, in config order."""
    return [m["name"] for m in config["models"]
            if analysis is None or analysis in model_analyses(config, m["name"])]


def steps(config: dict, model: str) -> list[str]:
    """The checkpoints (revisions) of ``model`` the study reads, in training order."""
    return revisions(model_entry(config, model))


def datasets(config: dict, kind: str) -> list[dict]:
    """Dataset entries of one kind (``fmri`` or ``meg``), in config order."""
    return [d for d in config["datasets"] if d["kind"] == kind]


def stimset_of(config: dict, dataset: str) -> str:
    """The stimulus set of ``dataset``: the words its subjects heard.

    A dataset may name another's (``stimuli:``): the demo's MEG subject heard
    the fMRI stories, so one activation file serves both.
    """
    return dataset_entry(config, dataset).get("stimuli", dataset)


def stimsets(config: dict, model: str | None = None) -> list[str]:
    """Every stimulus set the analyses (of ``model``, or of the study) read, in a fixed order."""
    analyses = set(model_analyses(config, model) if model else config["analyses"])
    sets = []
    if {"encoding", "crosscoder", "variance"} & analyses:
        sets += [stimset_of(config, d["name"]) for d in datasets(config, "fmri")]
    if "temporal" in analyses:
        sets += [stimset_of(config, d["name"]) for d in datasets(config, "meg")]
    if "probing" in analyses:
        sets += [f"probe_{t}" for t in config["probing"]["tasks"]]
    if "sae" in analyses:
        sets.append(SAE_CORPUS)
    return list(dict.fromkeys(sets))


def sites_of(config: dict, stimset: str) -> list[str]:
    """Sites read for ``stimset``.

    Benchmark prompts are probed at one site (``probing.site``, the MLP output
    by default): their files hold that site whatever ``activations.sites`` says.
    """
    if stimset.startswith("probe_"):
        return [config["probing"].get("site", "mlp")]
    return config["activations"]["sites"]


def pooling_of(config: dict, stimset: str) -> str:
    """How tokens become one vector per unit of ``stimset``.

    Benchmark prompts are read whole (last token), stories word by word, the
    SAE corpus token by token; a dataset may set its own (annotation texts such
    as a movie's scene descriptions are averaged whole: ``mean``).
    """
    if stimset == SAE_CORPUS:
        return "token"
    if any(d["name"] == stimset for d in config["datasets"]):
        return dataset_entry(config, stimset).get("pooling", "word")
    return "last" if stimset.startswith("probe_") else "word"


def resampling_of(config: dict, dataset: str) -> str:
    """How unit features are resampled onto the brain's samples.

    Annotation texts read whole are intervals, not points: averaged over each
    TR they overlap. Words are points, Lanczos-interpolated.
    """
    return "overlap" if pooling_of(config, stimset_of(config, dataset)) == "mean" else "lanczos"


def context_runs(config: dict) -> list[tuple[str, int]]:
    """(stimulus set, window) of the temporal analysis' context-length sweep.

    The MEG stimulus sets again, each word read with only its last ``window`` tokens.
    """
    return [(stimset_of(config, d["name"]), w) for d in datasets(config, "meg")
            for w in config["temporal"]["context_windows"]]


def sae_runs(config: dict, model: str) -> list[tuple[str, int]]:
    """(step, seed) of every SAE: one per checkpoint, plus a second seed at the last one.

    The second seed measures how much of the change across checkpoints is
    seed-to-seed variation alone.
    """
    sae = config["sae"]
    runs = [(s, sae["seed"]) for s in steps(config, model)]
    if sae["seed_baseline"]:
        runs.append((steps(config, model)[-1], sae["seed"] + 1))
    return runs


def card_steps(config: dict, model: str) -> list[str]:
    """Checkpoints shown on feature cards: an early, a middle and the last one."""
    s = steps(config, model)
    return list(dict.fromkeys([s[0], s[len(s) // 2], s[-1]]))


def sae_card_steps(config: dict) -> list[str]:
    """Feature cards are drawn for the first model that runs SAEs."""
    sae_models = models(config, "sae")
    return card_steps(config, sae_models[0]) if sae_models else []


def story_params(config: dict, dataset: str) -> dict:
    """The simulation settings that shape a toy dataset's stories.

    Only these: changing the simulated brain must not invalidate the stimuli
    and every activation cache downstream.
    """
    sim = dataset_entry(config, dataset)["simulate"]
    keys = ("seed", "stories_train", "stories_test", "words_per_story", "language")
    return {k: sim[k] for k in keys}
