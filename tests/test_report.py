"""What a user hands on: the HTML report of a finished run, and the DAG as a picture (docs/rulegraph.svg)."""

import base64
import html
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, make_workdir, run_snakemake

CAPTIONS = REPO / "workflow/report"

# Every output marked report(...) by the rules the config builds, with its caption and
# category, read from the parsed workflow (the same objects the report is made from).
REPORT_OUTPUTS = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import (ConfigSettings, DeploymentSettings, OutputSettings, ResourceSettings,
                                      StorageSettings, WorkflowSettings)

with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(snakefile=Path(sys.argv[1]), workdir=Path(sys.argv[2]), config_settings=ConfigSettings(),
                      resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                      workflow_settings=WorkflowSettings(), deployment_settings=DeploymentSettings())
    out = {}
    for rule in wf._workflow.rules:
        for f in rule.output:
            if is_flagged(f, "report"):
                rep = f.flags["report"]
                out[str(f)] = {"rule": rule.name, "caption": str(rep.caption), "category": rep.category}
print("REPORT_OUTPUTS " + json.dumps(out))
"""


def _js_value(page: str, script_id: str, name: str):
    """The JSON literal the report assigns in ``<script id=...> var name = {...};``."""
    m = re.search(rf'<script id="{script_id}">\s*var {name} = ', page)
    assert m, f"no {name} in the report"
    value, _ = json.JSONDecoder().raw_decode(page, m.end())
    return value


def _plain(caption_html: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", caption_html)).split())


def _distinctive(rst: str) -> str:
    """The longest run of plain prose in a caption file (no reST markup), to find in the rendered HTML."""
    return max(re.findall(r"[A-Za-z0-9][A-Za-z0-9 ,.;:()%'=-]{20,}", " ".join(rst.split())), key=len).strip()


@pytest.fixture(scope="module")
def report(micro_run, tmp_path_factory):
    """``snakemake --report report.html`` on a copy of the finished micro run."""
    wd = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(micro_run, wd, symlinks=True)
    proc = subprocess.run([sys.executable, "-c", REPORT_OUTPUTS, str(REPO / "Snakefile"), str(wd)],
                          capture_output=True, text=True, timeout=300, cwd=wd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = json.loads(proc.stdout.split("REPORT_OUTPUTS ", 1)[1])
    proc = run_snakemake(wd, "--report", "report.html", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    page = (wd / "report.html").read_text()
    return wd, outputs, page, log


def test_every_figure_is_a_report_output_with_a_caption(report):
    wd, outputs, _, _ = report
    figures = sorted(p.relative_to(wd).as_posix() for p in (wd / "results/figures").iterdir()
                     if not p.name.startswith("."))
    # Every figure the run made is marked report(...), and every report(...) output is a figure the run made.
    assert sorted(outputs) == figures
    # Every caption file is used, and each by the figure of its name.
    used = {REPO.joinpath(o["caption"]).resolve() for o in outputs.values()}
    assert used == {p.resolve() for p in CAPTIONS.glob("*.rst")}
    for path, o in outputs.items():
        assert o["category"], path
        assert REPO.joinpath(o["caption"]).resolve().stem == path.rsplit("/", 1)[1].rsplit(".", 1)[0], path


def test_report_embeds_each_figure_with_its_caption(report):
    wd, outputs, page, log = report
    results = _js_value(page, "results", "results")
    categories = _js_value(page, "categories", "categories")
    # As many figures in the report as report(...) outputs in the DAG: one per caption and format.
    formats = yaml.safe_load((wd / "config/config.yaml").read_text())["plots"]["formats"]
    assert len(results) == len(outputs) == len(list(CAPTIONS.glob("*.rst"))) * len(formats)
    assert set(results) == set(outputs)
    for path, entry in results.items():
        name = path.rsplit("/", 1)[1]
        assert entry["filename"] == name
        # Self-contained: the figure's bytes are in the page.
        assert base64.b64decode(entry["data_uri"].split("base64,", 1)[1]) == (wd / path).read_bytes(), path
        rst = REPO.joinpath(outputs[path]["caption"]).read_text()
        assert _distinctive(rst) in _plain(entry["caption"]), (path, _distinctive(rst))
        # A caption that is not valid reST shows up in the report as a docutils error box.
        assert "system-message" not in entry["caption"], (path, entry["caption"])
        assert path in [f for subcats in categories[outputs[path]["category"]].values() for f in subcats]
        assert name in page
    assert "ERROR/" not in log and "WARNING/" not in log, log[-3000:]


def _dot(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Node labels and edges of Snakemake's dot output; fails on anything that is not dot."""
    lines = [line.strip() for line in text.strip().splitlines()]
    assert lines[0] == "digraph snakemake_dag {" and lines[-1] == "}", (lines[:1], lines[-1:])
    nodes, edges = {}, set()
    for line in lines[1:-1]:
        if m := re.fullmatch(r'(\d+)\[label = "([^"]*)".*\];', line):
            nodes[m.group(1)] = m.group(2).split("\\n")[0]
        elif m := re.fullmatch(r"(\d+) -> (\d+)", line):
            edges.add(m.groups())
        else:
            assert re.fullmatch(r"(graph|node|edge)\[.*\];?", line), line
    assert {n for e in edges for n in e} <= set(nodes)
    return nodes, {(nodes[a], nodes[b]) for a, b in edges}


@pytest.fixture(scope="module")
def default_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("default"), REPO / "config/config.yaml")


def test_rulegraph_of_the_default_config_is_dot_with_every_stage(default_workdir):
    proc = run_snakemake(default_workdir, "--rulegraph")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("digraph")
    nodes, edges = _dot(proc.stdout)
    rules = set(nodes.values())
    assert len(rules) == len(nodes)  # one node per rule
    listed = set(run_snakemake(default_workdir, "--list-rules").stdout.split())
    assert rules <= listed
    # One rule per stage, whichever model it serves.
    stages = {"toy_world", "toy_stimuli", "toy_subject", "train", "register", "activations", "context_activations",
              "encoding", "aggregate_encoding", "lm_eval", "probing", "phases", "sae", "sae_matching", "crosscoder",
              "word_epochs", "temporal", "temporal_context", "all"}
    assert stages | {r for r in listed if r.startswith("plot_")} <= rules
    for edge in [("train", "register"), ("register", "activations"), ("activations", "encoding"),
                 ("register", "context_activations"), ("context_activations", "temporal_context"),
                 ("encoding", "aggregate_encoding"), ("aggregate_encoding", "plot_encoding_trajectory"),
                 ("plot_encoding_trajectory", "all")]:
        assert edge in edges, edge
    assert "train" not in {b for a, b in edges if a in {"activations", "encoding"}}


def test_job_dag_of_the_default_config_has_every_job_of_the_dry_run(default_workdir):
    proc = run_snakemake(default_workdir, "--dag")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("digraph")
    nodes, edges = _dot(proc.stdout)
    dry = run_snakemake(default_workdir, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    table = dry.stdout.split("Job stats:")[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert len(nodes) == counts.pop("total")
    labels = list(nodes.values())
    assert {r: labels.count(r) for r in counts} == counts
    assert ("encoding", "aggregate_encoding") in edges
