"""Algorithm registry: `algo=<name>` selects `zoo/algos/<name>.py` (see zoo.algos.base for the module contract)."""

from zoo.algos import dpo, ppo, rm, sft

REGISTRY = {
    "sft": sft,
    "rm": rm,
    "dpo": dpo,
    "ppo": ppo,
}
