"""Algorithm registry: `algo=<name>` selects `zoo/algos/<name>.py` (see zoo.algos.base for the module contract)."""

from zoo.algos import cai, dpo, grpo, online_dpo, ppo, rlaif, rlaif_rm, rloo, rm, sft

REGISTRY = {
    "sft": sft,
    "rm": rm,
    "dpo": dpo,
    "ppo": ppo,
    "grpo": grpo,
    "rloo": rloo,
    "cai": cai,
    "rlaif": rlaif,
    "rlaif_rm": rlaif_rm,
    "online_dpo": online_dpo,
}
