"""The study's science choices (brainphase.study) on small config dicts."""

import copy

import yaml

from brainphase import study
from conftest import REPO


def _demo():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def _cfg():
    cfg = _demo()
    cfg["datasets"] = [
        {"name": "stories", "kind": "fmri", "source": "lebel", "path": "x", "subjects": ["a"]},
        {"name": "movie", "kind": "fmri", "source": "bids_fmri", "path": "y", "subjects": ["b"], "pooling": "mean"},
        {"name": "meg", "kind": "meg", "source": "meg_bids", "path": "z", "subjects": ["c"], "stimuli": "stories"},
    ]
    cfg["probing"] = {**cfg["probing"], "tasks": ["t1"], "site": "resid"}
    return cfg


def test_pooling_of_each_kind_of_stimulus_set():
    cfg = _cfg()
    assert study.pooling_of(cfg, "probe_t1") == "last"
    assert study.pooling_of(cfg, study.SAE_CORPUS) == "token"
    assert study.pooling_of(cfg, "stories") == "word"
    assert study.pooling_of(cfg, "movie") == "mean"


def test_annotation_dataset_read_whole_is_resampled_by_overlap():
    cfg = _cfg()
    assert study.resampling_of(cfg, "movie") == "overlap"
    assert study.resampling_of(cfg, "stories") == "lanczos"
    # The MEG dataset heard the stories: its resampling follows their pooling.
    assert study.resampling_of(cfg, "meg") == "lanczos"


def test_probe_sets_are_read_at_the_probing_site_only():
    cfg = _cfg()
    assert study.sites_of(cfg, "probe_t1") == ["resid"]
    assert study.sites_of(cfg, "stories") == cfg["activations"]["sites"]


def test_stimulus_sets_are_shared_and_ordered():
    cfg = _cfg()
    assert study.stimset_of(cfg, "meg") == "stories"
    sets = study.stimsets(cfg)
    expected = ["stories", "movie", "probe_t1"] + ([study.SAE_CORPUS] if "sae" in cfg["analyses"] else [])
    assert sets == expected


def _seven_checkpoints():
    cfg = _demo()
    cfg["models"] = [copy.deepcopy(cfg["models"][0])]
    cfg["models"][0]["train"]["checkpoints"] = [0, 1, 2, 4, 8, 16, 32]
    return cfg, cfg["models"][0]["name"]


def test_card_steps_of_seven_checkpoints_are_first_middle_last():
    cfg, m = _seven_checkpoints()
    s = study.steps(cfg, m)
    assert len(s) == 7
    assert study.card_steps(cfg, m) == [s[0], s[3], s[6]]


def test_sae_runs_add_a_second_seed_at_the_last_checkpoint():
    cfg, m = _seven_checkpoints()
    cfg["sae"] = {**cfg["sae"], "seed": 5, "seed_baseline": True}
    s = study.steps(cfg, m)
    assert study.sae_runs(cfg, m) == [(x, 5) for x in s] + [(s[-1], 6)]
    cfg["sae"]["seed_baseline"] = False
    assert study.sae_runs(cfg, m) == [(x, 5) for x in s]


def test_a_model_may_run_fewer_analyses_than_the_study():
    cfg = _demo()
    small = cfg["models"][1]["name"]
    assert study.model_analyses(cfg, small) == ["temporal"]
    assert small in study.models(cfg, "temporal") and small not in study.models(cfg, "encoding")
    assert study.stimsets(cfg, small) == [study.stimset_of(cfg, d["name"]) for d in study.datasets(cfg, "meg")]
