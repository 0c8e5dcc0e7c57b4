"""Algorithm registry: `algo=<name>` selects `zoo/algos/<name>.py` (see zoo.algos.base for the module contract)."""

from zoo.algos import dpo, grpo, ppo, rloo, rm, sft

REGISTRY = {
    "sft": sft,
    "rm": rm,
    "dpo": dpo,
    "ppo": ppo,
    "grpo": grpo,
    "rloo": rloo,
}
