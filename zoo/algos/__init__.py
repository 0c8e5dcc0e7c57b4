"""Algorithm registry: `algo=<name>` selects `zoo/algos/<name>.py` (see zoo.algos.base for the module contract)."""

from zoo.algos import cai, dpo, grpo, ppo, rlaif, rloo, rm, sft

REGISTRY = {
    "sft": sft,
    "rm": rm,
    "dpo": dpo,
    "ppo": ppo,
    "grpo": grpo,
    "rloo": rloo,
    "cai": cai,
    "rlaif": rlaif,
}
