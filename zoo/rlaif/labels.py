"""`python -m zoo.rlaif.labels RUN_DIR...`: the AI labels a finished RLAIF run trained on (each stage's
ai_pairs.jsonl), read against its task's gold signal (zoo.rlaif.judging.gold_agreement). Runs record it as
`<stage>/labels/gold_agreement` as they train; this reads it from the files of runs that did not."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf


def agreement(run_dir: Path) -> dict[str, dict]:
    """{stage: gold_agreement(...)} for every stage of `run_dir` that kept AI-labelled pairs."""
    from zoo import rewards
    from zoo.files import read_jsonl
    from zoo.rlaif.judging import gold_agreement

    gold = OmegaConf.load(run_dir / "config.yaml").data.get("gold")
    if not gold:
        raise SystemExit(f"{run_dir}/config.yaml: data.gold is empty; there is no gold to read the labels against")
    found = {}
    for path in sorted((run_dir / "stages").glob("*/ai_pairs.jsonl")):
        pairs = read_jsonl(path)
        found[path.parent.name] = {**gold_agreement(pairs, rewards.get(gold)), "pairs": len(pairs)}
    return found


def main(argv: list[str] | None = None) -> None:
    dirs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not dirs:
        raise SystemExit("usage: python -m zoo.rlaif.labels RUN_DIR...")
    for run_dir in dirs:
        if not (run_dir / "config.yaml").is_file():
            raise SystemExit(f"{run_dir}: no config.yaml; expected a run dir")
        for stage, found in agreement(run_dir).items():
            share = found["gold_agreement"]
            print(f"{run_dir}\t{stage}\tgold_agreement {'-' if share is None else f'{share:.3f}'}\t"
                  f"{found['gold_separated']} of {found['pairs']} pairs separated by the gold")


if __name__ == "__main__":
    main()
