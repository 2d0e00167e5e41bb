"""Probe items rendered by lm-eval: our prompts equal the contexts lm-eval scores, task by task.

Local tasks in the formats of lm-eval's own mmlu (jinja question with lettered
choices, a group of subtasks, first_n demonstrations from dev), commonsense_qa
(letters as choices, a letter as target, demonstrations drawn at random from
train) and ja_leaderboard_jcommonsenseqa (choices from a field, process_docs,
newline target delimiter, a Japanese description, 3-shot in its YAML), each
run through ``lm_eval.simple_evaluate`` with a tiny model.
"""

import json
import random
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from brainphase.evals.harness import num_fewshot_for, resolve_include_path
from brainphase.evals.prompts import probe_items

REPO = Path(__file__).resolve().parents[1]
WORDS = ["river", "stone", "lamp", "cloud", "garden", "engine", "violin", "harbor", "pepper", "candle", "forest",
         "mirror", "planet", "ticket", "window"]
JA_WORDS = ["やま", "かわ", "そら", "うみ", "はな", "いし", "ほし", "もり", "みち", "まど"]

MMLU_TEMPLATE = """dataset_path: json
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

CSQA = """task: tcsqa
dataset_path: json
dataset_kwargs:
  data_files: {{train: {train}, validation: {validation}}}
training_split: train
validation_split: validation
output_type: multiple_choice
doc_to_text: "Question: {{{{ question.strip() }}}}\\nA. {{{{choices['text'][0]}}}}\\nB. {{{{choices['text'][1]}}}}\\nC. {{{{choices['text'][2]}}}}\\nD. {{{{choices['text'][3]}}}}\\nE. {{{{choices['text'][4]}}}}\\nAnswer:"
doc_to_target: answerKey
doc_to_choice: ['A', 'B', 'C', 'D', 'E']
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

JCSQA = """task: tjcsqa
dataset_path: json
dataset_kwargs:
  data_files: {{train: {train}, validation: {validation}}}
training_split: train
validation_split: validation
test_split: null
fewshot_split: train
num_fewshot: 3
description: "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\\n\\n"
process_docs: !function tjcsqa_utils.process_docs
doc_to_text: "### 指示：\\n出力は以下から選択してください：\\n{{% for choice in choices %}}- {{{{ choice }}}}\\n{{% endfor %}}\\n### 入力：\\n{{{{ question }}}}\\n\\n### 応答："
doc_to_target: label
doc_to_choice: choices
target_delimiter: "\\n"
output_type: multiple_choice
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

JCSQA_UTILS = '''def process_docs(dataset):
    def _add_choices(doc):
        doc["choices"] = [doc[f"choice{i}"] for i in range(5)]
        return doc

    return dataset.map(_add_choices)
'''


def _jsonl(path, docs):
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    return json.dumps(str(path))


def _mmlu_docs(rng, subject, n):
    docs = []
    for _ in range(n):
        w = rng.sample(WORDS, 5)
        docs.append({"question": f"Which word goes with {w[0]} in {subject}? ", "subject": subject,
                     "choices": w[1:], "answer": rng.randrange(4)})
    return docs


def _csqa_docs(rng, n, prefix):
    docs = []
    for i in range(n):
        w = rng.sample(WORDS, 6)
        docs.append({"id": f"{prefix}{i}", "question": f"Where is a {w[0]} found?", "question_concept": w[0],
                     "choices": {"label": list("ABCDE"), "text": w[1:]}, "answerKey": rng.choice("ABCDE")})
    return docs


def _jcsqa_docs(rng, n, start):
    docs = []
    for i in range(n):
        w = rng.sample(JA_WORDS, 6)
        docs.append({"q_id": start + i, "question": f"{w[0]}のちかくにあるものは？",
                     **{f"choice{j}": w[j + 1] for j in range(5)}, "label": rng.randrange(5)})
    return docs


@pytest.fixture(scope="module")
def task_root(tmp_path_factory):
    """Local tasks in the real formats, data as JSONL in the real datasets' fields (absolute data_files)."""
    root = tmp_path_factory.mktemp("lmeval_tasks")
    rng = random.Random(0)
    (root / "_default_template_yaml").write_text(MMLU_TEMPLATE)
    subtasks = []
    for subject in ("anatomy", "astronomy"):
        test = _jsonl(root / f"tmmlu_{subject}_test.jsonl", _mmlu_docs(rng, subject, 10))
        dev = _jsonl(root / f"tmmlu_{subject}_dev.jsonl", _mmlu_docs(rng, subject, 5))
        (root / f"tmmlu_{subject}.yaml").write_text(
            f'"dataset_kwargs": {{"data_files": {{"test": {test}, "dev": {dev}}}}}\n'
            f'"description": "The following are multiple choice questions (with answers) about {subject}.\\n\\n"\n'
            f'"include": "_default_template_yaml"\n"task": "tmmlu_{subject}"\n"task_alias": "{subject}"\n')
        subtasks.append(f"tmmlu_{subject}")
    (root / "_tmmlu.yaml").write_text("group: tmmlu\ntask:\n" + "".join(f"  - {t}\n" for t in subtasks)
                                      + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: True\n"
                                        "metadata:\n  version: 2\n")
    (root / "tcsqa.yaml").write_text(CSQA.format(train=_jsonl(root / "tcsqa_train.jsonl", _csqa_docs(rng, 12, "t")),
                                                 validation=_jsonl(root / "tcsqa_val.jsonl",
                                                                   _csqa_docs(rng, 10, "v"))))
    (root / "tjcsqa_utils.py").write_text(JCSQA_UTILS)
    (root / "tjcsqa.yaml").write_text(JCSQA.format(train=_jsonl(root / "tjcsqa_train.jsonl", _jcsqa_docs(rng, 12, 0)),
                                                   validation=_jsonl(root / "tjcsqa_val.jsonl",
                                                                     _jcsqa_docs(rng, 10, 100))))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Llama with a byte-level BPE: lm-eval needs a model, not a good one."""
    from brainphase.toylm import build_model, train_tokenizer
    from brainphase.toylm.train import save_checkpoint

    tok = train_tokenizer([" ".join(WORDS + JA_WORDS)] * 20, vocab_size=300)
    model = build_model(len(tok), n_layers=2, d_model=16, n_heads=2, d_ff=32, max_position=1024, seed=0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("ckpt") / "step0", "tiny", 0, 0)


def _lmeval_contexts(checkpoint, task, root, num_fewshot, seed, limit):
    import lm_eval
    from lm_eval.tasks import TaskManager

    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={checkpoint},dtype=float32", tasks=[task], num_fewshot=num_fewshot,
        limit=limit, batch_size=8, device="cpu", log_samples=True,
        task_manager=TaskManager(include_path=str(root), include_defaults=False), random_seed=seed,
        numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=0)
    return {(leaf, s["doc_id"]): s["arguments"][0][0] for leaf, samples in res["samples"].items() for s in samples}


# (task, num_fewshot): 5-shot overrides the jcsqa YAML's 3, as the study does for JCommonsenseQA.
CASES = [("tmmlu", 2), ("tcsqa", 3), ("tjcsqa", 5), ("tjcsqa", None)]


@pytest.mark.parametrize("task,shots", CASES)
def test_prompts_equal_the_contexts_lm_eval_scores(checkpoint, task_root, task, shots):
    seed, limit = 3, 6
    logged = _lmeval_contexts(checkpoint, task, task_root, shots, seed, limit)
    items = probe_items(task, include_path=[task_root], num_fewshot=shots, seed=seed, limit=limit)
    ours = {(r.run, r.doc_id): r.text for r in items.itertuples()}
    assert ours == logged
    assert (items.task == task).all() and items.unit_id.is_unique
    n_shots = 3 if shots is None else shots  # None: the YAML's own count (jcsqa pins 3)
    if task == "tmmlu":
        assert set(items.run) == {"tmmlu_anatomy", "tmmlu_astronomy"} and (items.n_choices == 4).all()
        assert all(t.count("Answer:") == n_shots + 1 for t in items.text)
        assert all(t.startswith("The following are multiple choice questions") for t in items.text)
    if task == "tjcsqa":
        assert all(t.count("### 応答：") == n_shots + 1 for t in items.text) and (items.lang == "ja").all()
        assert (items.n_choices == 5).all()


def test_targets_are_the_gold_indices(task_root):
    items = probe_items("tmmlu", include_path=[task_root], num_fewshot=0, seed=0)
    for run, g in items.groupby("run"):
        docs = [json.loads(line) for line in (task_root / f"{run}_test.jsonl").read_text().splitlines()]
        assert list(g.target) == [d["answer"] for d in docs]
        assert list(g.doc_id) == list(range(len(docs)))
    csqa = probe_items("tcsqa", include_path=[task_root], num_fewshot=0, seed=0)
    docs = [json.loads(line) for line in (task_root / "tcsqa_val.jsonl").read_text().splitlines()]
    assert list(csqa.target) == ["ABCDE".index(d["answerKey"]) for d in docs]
    assert (csqa.lang == "en").all()
    j = probe_items("tjcsqa", include_path=[task_root], num_fewshot=0, seed=0)
    docs = [json.loads(line) for line in (task_root / "tjcsqa_val.jsonl").read_text().splitlines()]
    assert list(j.target) == [d["label"] for d in docs]
    # Zero-shot: the description and the question, nothing else.
    assert j.text.iloc[0].startswith("以下は") and j.text.iloc[0].count("### 応答：") == 1


def test_fewshot_seed_changes_random_demonstrations(task_root):
    a = probe_items("tcsqa", include_path=[task_root], num_fewshot=3, seed=0)
    b = probe_items("tcsqa", include_path=[task_root], num_fewshot=3, seed=1)
    a2 = probe_items("tcsqa", include_path=[task_root], num_fewshot=3, seed=0)
    assert list(a.text) == list(a2.text)
    assert list(a.text) != list(b.text)


def test_demo_tasks_take_the_same_path(task_root, tmp_path, checkpoint):
    from brainphase.evals import write_demo_tasks
    from brainphase.toyworld import build_world

    d = tmp_path / "demo"
    write_demo_tasks(build_world(0), d, n_per_relation=6, seed=0)
    items = probe_items("toyfacts", include_path=[d], num_fewshot=2, seed=4)
    assert set(items.run) == {"toyfacts_en", "toyfacts_ja"}
    assert set(items.lang) == {"en", "ja"} and items.item_id.str.contains("-test-").all()
    logged = _lmeval_contexts(checkpoint, "toyfacts_en", d, 2, 4, None)
    en = items[items.run == "toyfacts_en"]
    assert {(r.run, r.doc_id): r.text for r in en.itertuples()} == logged


def test_microqa_loads_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = resolve_include_path(["tests/data/lmeval/microqa"])
    assert paths == [str(REPO / "tests/data/lmeval/microqa")]
    items = probe_items("microqa", include_path=paths, num_fewshot=1, seed=0)
    assert items.groupby("run").size().to_dict() == {"microqa_next_letter": 20, "microqa_sums": 20}
    assert items.text.iloc[0].count("Answer:") == 2 and (items.n_choices == 4).all()
    with pytest.raises(ValueError, match="include_path.*no_such_dir"):
        resolve_include_path(["no_such_dir"])


def test_num_fewshot_per_task():
    assert num_fewshot_for(5, "mmlu") == 5
    assert num_fewshot_for(None, "mmlu") is None
    spec = {"default": 5, "ja_leaderboard_jcommonsenseqa": 3, "toyfacts": 1}
    assert num_fewshot_for(spec, "ja_leaderboard_jcommonsenseqa") == 3
    assert num_fewshot_for(spec, "mmlu") == 5
    assert num_fewshot_for(spec, "toyfacts_en") == 1  # a language of the benchmarked demo group
    with pytest.raises(ValueError, match="default"):
        num_fewshot_for({"mmlu": 5}, "commonsense_qa")


# --------------------------------------------------------------------------- over-long prompts, end to end
def _run_script(name, **ns):
    runpy.run_path(str(REPO / "workflow/scripts" / name), init_globals={"snakemake": SimpleNamespace(**ns)})


def test_overlong_prompt_is_dropped_and_counted(tmp_path):
    """activations.py drops the too-long prompt and lists it; probing.py reports n_dropped, probes the rest."""
    from brainphase.contracts.activations import load_activations
    from brainphase.toylm import build_model, train_tokenizer
    from brainphase.toylm.train import save_checkpoint

    tok = train_tokenizer([" ".join(WORDS)] * 20, vocab_size=290)
    model = build_model(len(tok), n_layers=2, d_model=16, n_heads=2, d_ff=32, max_position=24, seed=0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    ckpt = save_checkpoint(model, tok, tmp_path / "ckpt", "tiny", 0, 0)
    rng = np.random.default_rng(0)
    n = 40
    texts = [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    texts[7] = " ".join(WORDS * 4)  # far beyond 24 positions
    items = pd.DataFrame({"unit_id": [f"t/{i}" for i in range(n)], "run": "t", "text": texts, "lang": "en",
                          "onset": None, "offset": None, "item_id": [f"t/{i}" for i in range(n)],
                          "doc_id": range(n), "task": "t", "target": rng.integers(0, 4, n), "n_choices": 4})
    stim = tmp_path / "probe_t.parquet"
    items.to_parquet(stim)
    acts_path = tmp_path / "probe_t.safetensors"
    _run_script("activations.py", log=[str(tmp_path / "act.log")], threads=1,
                input=SimpleNamespace(checkpoint=str(ckpt), stimuli=[str(stim)]), output=[str(acts_path)],
                params=SimpleNamespace(model="tiny", revision="step0", tokens=0, stimsets=["probe_t"],
                                       poolings=["last"], windows=[None], sites=[["mlp"]],
                                       activations={"batch_size": 8, "context_window": None, "sites": ["resid"]},
                                       token_site="resid", token_layer=1, device="cpu", trust_remote_code=False))
    arrays, meta = load_activations(acts_path)
    assert meta["n_dropped"] == 1 and meta["dropped_unit_ids"] == ["t/7"]
    assert meta["unit_ids"] == [u for u in items.unit_id if u != "t/7"]
    assert set(arrays) == {"mlp.1", "mlp.2"} and all(a.shape[0] == n - 1 for a in arrays.values())
    assert "1 of 40 units are longer" in (tmp_path / "act.log").read_text()

    out = {k: str(tmp_path / f"probe.{k}.parquet") for k in ("summary", "neurons", "boot")}
    _run_script("probing.py", log=[str(tmp_path / "probe.log")], threads=1,
                input=SimpleNamespace(stimuli=str(stim), activations=str(acts_path)), output=SimpleNamespace(**out),
                wildcards=SimpleNamespace(model="tiny", step="step0", task="t"),
                params=SimpleNamespace(test_fraction=0.25, site="mlp", n_boot=15, seed=0, tokens=0))
    summary = pd.read_parquet(out["summary"])
    assert (summary.n_dropped == 1).all() and (summary.n_items == n - 1).all()
    assert set(summary.layer) == {1, 2} and set(summary.site) == {"mlp"}
    boot = pd.read_parquet(out["boot"])
    assert list(boot.columns) == ["model", "step", "tokens", "task", "site", "layer", "replicate", "value"]
    assert len(boot) == 2 * 15
