"""The entry point: `python -m zoo.train algo=dpo model=smollm2-135m data=sentiment ...` (and `-m` multirun).

`run(cfg)` is what tests and sweepers call: it validates the config, runs the stages (`stages.*`, then
`algo`), evaluates the starting policy and the trained one with the same harness, writes the run dir
(config.yaml, env.json, metrics.json, samples.jsonl) and returns the metrics.
"""

from __future__ import annotations

import gc
import json
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zoo import config, costs, dist, levers, resume, seeds, tracking
from zoo.files import write_json, write_jsonl
from zoo.rewards import usage


def _stage_args(cfg: DictConfig, out: Path) -> dict:
    """Every stage's TRL config, built (and so validated) before anything loads."""
    from zoo.algos import REGISTRY

    built = {}
    for name, algo in config.iter_stages(cfg):
        built[name] = config.trl_args(
            REGISTRY[algo.name].CONFIG_CLASS,
            [("trainer", cfg.trainer), (f"{config.stage_path(cfg, name)}.args", algo.args)],
            output_dir=str(out / "stages" / name / "checkpoints"),
            run_name=f"{cfg.logger.run_name}/{name}",
            report_to=tracking.report_to(cfg),
        )
        check = getattr(REGISTRY[algo.name], "check_args", None)
        if check:
            check(built[name], f"{config.stage_path(cfg, name)}.args")
    return built


def _check_rows(cfg: DictConfig, shares: dict) -> None:
    """Each stage's rows have the columns its algorithm needs (an algorithm's `check_rows`), before anything loads."""
    from zoo.algos import REGISTRY

    for name, algo in config.iter_stages(cfg):
        check = getattr(REGISTRY[algo.name], "check_rows", None)
        if check:
            check(shares[name], cfg, config.stage_path(cfg, name))


def _data_shares(cfg: DictConfig, task) -> dict:
    """Each stage's own disjoint share of the training rows (all of them for a single-stage run)."""
    from zoo.data import partition

    names = [name for name, _ in config.iter_stages(cfg)]
    sizes = cfg.data.get("stage_rows") or None
    return partition(task.train, names, sizes) if len(names) > 1 or sizes else {names[0]: task.train}


def _run_stage(cfg, name, algo, args, policy, rows, gold_fn, artifacts, named_rewards, out,
               curve=None) -> tuple[str, dict]:
    """Train one stage, or pick up its finished output on resume. Returns (exported dir, stage metrics)."""
    from zoo.algos import REGISTRY
    from zoo.algos.base import Context
    from zoo.generation import counting_generate, eos_ids
    from zoo.models import export_merged

    module = REGISTRY[algo.name]
    stage_dir = out / "stages" / name
    done = stage_dir / "model"
    if done.exists():  # written by an atomic rename, so it exists only once complete
        resume.refuse_restart(done, bool(cfg.resume), f"{done} holds a finished stage {name!r}")
        print(f"[zoo] stage {name}: already done, reusing {done}")
        return str(done), json.loads((stage_dir / "metrics.json").read_text())
    stage_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(cfg=cfg, stage=name, config_path=config.stage_path(cfg, name), algo=algo, args=args,
                  policy=policy, rows=rows, gold_fn=gold_fn, stage_dir=stage_dir, resume=bool(cfg.resume),
                  artifacts=artifacts, rewards=named_rewards, curve=curve)
    print(f"[zoo] stage {name}: {algo.name} on {len(rows)} rows")
    # The scorers the stage trains on (zoo.eval.signals), kept on disk as they are first called: a resumed stage
    # may not call again what it used before the crash (pairs ranked by the gold are cached).
    record = stage_dir / "scorers.json"
    previous = json.loads(record.read_text()) if cfg.resume and record.exists() else None
    # Its cost in shared units (zoo.costs), persisted as it grows so a resumed stage continues the count.
    cost_file = stage_dir / "cost.json"
    spent = json.loads(cost_file.read_text()) if cfg.resume and cost_file.exists() else None
    t0 = time.time()
    with usage.recording(previous, on_new=lambda calls: dist.is_main() and write_json(record, calls)) as scorers, \
            costs.metering(spent, on_change=lambda c: dist.is_main() and write_json(cost_file, c)) as cost, \
            counting_generate(policy.model, eos_ids(policy.model, policy.tokenizer)), usage.training(name):
        trained, metrics = module.train(ctx)
    metrics[f"{name}/scorers"] = sorted(scorers)
    metrics[f"{name}/produces"] = module.PRODUCES  # zoo.compare lays only policy stages on its step axis
    cost["seconds"] = time.time() - t0  # the process that finished the stage (not persisted for a resume)
    cost["gold_scored"] = cost.get(f"scored/{getattr(gold_fn, 'name', None)}", 0)
    metrics.update({f"{name}/cost/{key}": cost.get(key, 0) for key in costs.KEYS})
    # Metrics first: the exported model dir appears last (atomically), so its existence means all is written.
    if dist.is_main():  # one writer of the run dir under zoo.launch; export_merged waits for it
        write_json(stage_dir / "metrics.json", metrics)
    # A reward model shares the policy's starting weights and tokenizer, so both export the same way.
    export_merged(trained, policy, cfg, done, causal_lm=module.PRODUCES == "policy")
    if dist.is_main():
        shutil.rmtree(args.output_dir, ignore_errors=True)  # checkpoints are only needed until the stage is done
    return str(done), metrics


def _curve(cfg, out, eval_rows, policy, gold_fn, independent_fn, named, baseline_dir, baseline_results: dict):
    """The harness along training for a policy stage (eval.every_steps / eval.at_steps), or None: off, or the
    run's baseline (eval.baseline) is a stage that has not run yet."""
    from zoo import rewards
    from zoo.eval.curve import Curve
    from zoo.models import load_reference

    if not (cfg.eval.get("every_steps") or cfg.eval.get("at_steps")) or baseline_dir is None:
        return None
    return Curve(out / "curve.jsonl", eval_rows, cfg.eval, policy.tokenizer, gold_fn=gold_fn,
                 proxy_fn=rewards.WeightedSum(named) if named else None, independent_fn=independent_fn,
                 baseline_loader=lambda: load_reference(cfg, baseline_dir), baseline_results=baseline_results,
                 baseline_key=(baseline_dir, tuple(n for n, _, _ in named)))


def _train_stages(cfg, stage_args, shares, eval_rows, gold_fn, independent_fn, out, metrics: dict):
    """Run every stage in order. Returns (final policy bundle, {policy stage: exported dir}, the run's reward).

    The run's reward functions (reward.functions, or the reward model an `rm` stage trained) are built once and
    rebuilt only when a stage produces a new artifact; the same functions go to the stages and the harness.
    """
    from zoo import rewards
    from zoo.algos import REGISTRY
    from zoo.models import load_policy

    policy = load_policy(cfg)
    artifacts, policy_dirs, baseline_results = {}, {"start": policy.path}, {}
    named = rewards.for_run(cfg, artifacts)
    for name, algo in config.iter_stages(cfg):
        module = REGISTRY[algo.name]
        seeds.seed_all(seeds.seed_for("run", cfg.trainer.seed))  # each stage starts on the same stream, resumed or not
        curve = (_curve(cfg, out, eval_rows, policy, gold_fn, independent_fn, named,
                        policy_dirs.get(cfg.eval.baseline), baseline_results)
                 if module.PRODUCES == "policy" else None)
        done, stage_metrics = _run_stage(cfg, name, algo, stage_args[name], policy, shares[name], gold_fn,
                                         artifacts, named, out, curve)
        if curve is not None:
            curve.close()
        metrics.update(stage_metrics)
        if module.PRODUCES == "policy":
            # The next stage (and the eval) start from the exported weights, not the in-memory wrapper.
            policy_dirs[name] = done
            del policy
            gc.collect()
            policy = load_policy(cfg, done)
        else:
            artifacts[module.PRODUCES] = done
            named = rewards.for_run(cfg, artifacts)
    return policy, policy_dirs, named


def _trained_on(cfg, task, named, metrics: dict) -> tuple[list[str], dict[str, str]]:
    from zoo.algos import REGISTRY
    from zoo.eval.signals import trained_on

    stages = [name for name, _ in config.iter_stages(cfg)]
    policy_stages = [name for name, algo in config.iter_stages(cfg) if REGISTRY[algo.name].PRODUCES == "policy"]
    return trained_on({s: metrics.get(f"{s}/scorers", []) for s in stages}, policy_stages, gold=task.gold,
                      proxy=[n for n, _, _ in named], independent=task.independent)


def _run_cost(cfg, metrics: dict) -> dict:
    """`run/cost/*`: what the stages after the evaluation baseline cost (zoo.costs), i.e. what the evaluated policy
    paid beyond the start it is compared with (all stages when eval.baseline=start)."""
    stages = [name for name, _ in config.iter_stages(cfg)]
    after = stages[stages.index(cfg.eval.baseline) + 1:] if cfg.eval.baseline in stages else stages
    return {f"run/cost/{key}": sum(metrics.get(f"{s}/cost/{key}", 0) for s in after) for key in costs.KEYS}


def _evaluated(cfg, policy, named, gold_fn):
    """The policy the harness evaluates: the final weights, or, for an algorithm that optimises at decoding time
    (best_of_n: its module's `decoder`), those weights decoded its way."""
    from zoo.algos import REGISTRY

    decoder = getattr(REGISTRY[cfg.algo.name], "decoder", None)
    return decoder(policy.model, cfg.algo, named, gold_fn) if decoder else policy.model


def run(cfg: DictConfig) -> dict:
    """Run the configured pipeline end to end and return its metrics (also written to metrics.json)."""
    from zoo import rewards
    from zoo.data import load_task
    from zoo.eval import evaluate_columns, format_table
    from zoo.models import load_reference

    t0 = time.time()
    config.validate(cfg)
    out = Path(cfg.paths.output_dir)
    if cfg.resume and (out / "metrics.json").exists():  # written last: the run finished (e.g. a rerun sweep job)
        print(f"[zoo] {out} already finished (metrics.json); resume=true returns its metrics")
        return json.loads((out / "metrics.json").read_text())
    if cfg.resume and not (out / "config.yaml").exists():
        print(f"[zoo] resume=true: no earlier run in {out} (no config.yaml); starting a fresh run")
    stage_args = _stage_args(cfg, out)
    # Before anything large is allocated (rows, weights): from here on glibc keeps what the run frees.
    allocator = levers.malloc_keep(levers.lever(cfg.trainer, "malloc_keep"))
    task = load_task(cfg)
    shares = _data_shares(cfg, task)
    _check_rows(cfg, shares)

    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main():
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        write_json(out / "env.json", {**tracking.environment(cfg), "allocator": allocator})
    wandb_run = tracking.start(cfg, out)
    metrics: dict = {}
    try:
        with levers.using(cfg.trainer):  # trainer.zoo's sampling levers, wherever this run samples
            gold_fn = rewards.get(task.gold) if task.gold else None
            independent_fn = rewards.get(task.independent) if task.independent else None
            policy, policy_dirs, named = _train_stages(cfg, stage_args, shares, task.eval, gold_fn, independent_fn,
                                                       out, metrics)
            # The baseline (the run's starting weights, or a named stage's output) is the "before" column and the
            # KL / win-rate reference of the others.
            baseline_dir = policy_dirs[cfg.eval.baseline]
            baseline = policy.model if baseline_dir == policy.path else load_reference(cfg, baseline_dir)
            also = {stage: load_reference(cfg, policy_dirs[stage]) for stage in cfg.eval.get("also", None) or []}
            t_eval = time.time()
            columns, records = evaluate_columns(_evaluated(cfg, policy, named, gold_fn), baseline, policy.tokenizer, task.eval, cfg.eval,
                                                gold_fn=gold_fn, proxy_fn=rewards.WeightedSum(named) if named else None,
                                                independent_fn=independent_fn, also=also)
            for column in columns.values():
                metrics.update(column)
            metrics["run/trained_on"], notes = _trained_on(cfg, task, named, metrics)
            metrics.update(_run_cost(cfg, metrics))
            metrics["run/eval_seconds"] = time.time() - t_eval  # the harness's columns, probes included
            metrics["run/seconds"] = time.time() - t0
            if dist.is_main():  # every rank evaluated the same prompts; one writes
                write_jsonl(out / "samples.jsonl", records)
                write_json(out / "metrics.json", metrics)
                if not cfg.keep_weights:  # a finished run resumes from metrics.json, never from these
                    for stage_model in (out / "stages").glob("*/model"):
                        shutil.rmtree(stage_model)
                print(format_table(columns, notes))
                print(f"[zoo] run dir: {out}")
    finally:
        tracking.finish(wandb_run, metrics)
    return metrics


def one_run_dir(overrides: list[str]) -> list[str]:
    """`paths.output_dir=X` also makes X Hydra's run dir, so Hydra's files (.hydra/, the job log) land beside the
    zoo's instead of in a stray outputs/<date>/<time> of their own."""
    keys = {o.lstrip("+~").split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    if "paths.output_dir" in keys and "hydra.run.dir" not in keys:
        return [*overrides, f"hydra.run.dir={keys['paths.output_dir']}"]
    return overrides


def remove_hydra_leftovers() -> None:
    """After a failed validation: Hydra made the run dir and wrote its own files before the zoo wrote anything;
    remove them, so a mistake leaves nothing behind (a dir the zoo had written into is kept as it is)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    hydra_files = {".hydra", f"{hc.job.name}.log"}
    cwd = Path.cwd().resolve()
    if not run_dir.is_dir() or run_dir.resolve() in (cwd, *cwd.parents) or \
            not {p.name for p in run_dir.iterdir()} <= hydra_files:
        return
    shutil.rmtree(run_dir)
    default_root = Path.cwd() / "outputs"  # Hydra's default layout: outputs/<date>/<time>_<algo>
    for parent in run_dir.parents:
        if parent == default_root.parent or default_root not in (parent, *parent.parents) or any(parent.iterdir()):
            break
        parent.rmdir()


def main() -> None:
    from zoo import quiet

    quiet.install()
    import hydra

    from zoo import errors, sweep

    # An absolute path: relative to a module, Hydra would look inside the `zoo` package when started from the
    # installed `zoo-train` script, where conf/ is not.
    @hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"),
                config_name="train")
    def _main(cfg: DictConfig):
        info = sweep.job_info()
        if info is not None:  # one job of -m: recorded in sweep.json, a failure does not end the sweep
            return sweep.run_job(run, cfg, info)
        with errors.reported(cleanup=remove_hydra_leftovers):
            metrics = run(cfg)
        return metrics.get(cfg.objective) if cfg.get("objective") else None

    sys.argv = [sys.argv[0], *one_run_dir(config.normalize_overrides(sys.argv[1:]))]
    _main()


if __name__ == "__main__":
    main()
