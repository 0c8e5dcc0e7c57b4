"""Algorithm registry: `algo=<name>` selects `zoo/algos/<name>.py` (see zoo.algos.base for the module contract)."""

from zoo.algos import (best_of_n, cai, cpo, dpo, fixed_response, grpo, kto, online_dpo, orpo, ppo, preferred_ft, rlaif,
                       rlaif_rm, rloo, rm, rm_ranked, sft, simpo)

REGISTRY = {
    "sft": sft,
    "rm": rm,
    "dpo": dpo,
    "kto": kto,
    "orpo": orpo,
    "simpo": simpo,
    "cpo": cpo,
    "ppo": ppo,
    "grpo": grpo,
    "rloo": rloo,
    "cai": cai,
    "rlaif": rlaif,
    "rlaif_rm": rlaif_rm,
    "online_dpo": online_dpo,
    "best_of_n": best_of_n,
    "fixed_response": fixed_response,
    "preferred_ft": preferred_ft,
    "rm_ranked": rm_ranked,
}
