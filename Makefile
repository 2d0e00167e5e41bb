# Two commands: `make demo` sets up .venv and runs the embedded demo;
# `make test` sets up the same environment and runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extras of the package to install: `make setup EXTRAS=test,slurm` for `--profile profiles/slurm`.
EXTRAS ?= test
STAMP  := $(VENV)/.installed-$(shell (cat pyproject.toml constraints.txt; echo $(EXTRAS)) | cksum | cut -d' ' -f1)
CORES  ?= all
# Test processes (pytest-xdist), one file each at a time: the suite's long steps are Snakemake
# runs that leave a core idle while they start jobs; `make test TEST_WORKERS=0` runs it in one.
TEST_WORKERS ?= 2
# Tests and CI: no hub, no dataset downloads, one thread per process.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup demo demo-check test test-config dry-run lint format clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# constraints.txt pins torch to the CPU wheel: without it pip may pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@# The SLURM plugin was once a core dependency; left installed, it queries SLURM's
	@# controller on every Snakemake call (~9 s where a client is installed and none answers).
	@case ',$(EXTRAS),' in *,slurm,*) ;; *) $(BIN)/pip uninstall -q -y snakemake-executor-plugin-slurm 2>/dev/null || true;; esac
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
	$(BIN)/snakefmt --check Snakefile workflow/rules

# Rewrites Snakefile and workflow/rules/*.smk in snakefmt's style (`make lint` checks it).
format: setup
	$(BIN)/snakefmt Snakefile workflow/rules

# The micro config as the Snakemake workflow catalog runs a workflow's .test folder.
test-config: setup
	$(TEST_ENV) $(BIN)/snakemake -d .test --cores 2

test: setup
	$(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf results .snakemake
