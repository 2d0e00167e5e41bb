# Two commands: `make demo` sets up .venv and runs the embedded demo;
# `make test` sets up the same environment and runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
CORES  ?= all
# Tests and CI: no hub, no dataset downloads, one thread per process.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup demo demo-check test dry-run lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# constraints.txt pins torch to the CPU wheel: without it pip may pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/snakemake --cores $(CORES)

# The demo's tables, byte for byte, against the checksums recorded in tests/data.
demo-check: demo
	grep -v '^#' tests/data/demo_tables.sha256 | (cd results/tables && sha256sum --check --strict -)

dry-run: setup
	$(BIN)/snakemake -n

lint: setup
	$(BIN)/snakemake --lint

test: setup
	$(TEST_ENV) $(BIN)/python -m pytest

clean:
	rm -rf results .snakemake
