"""An LLM judge as a reward function (direct RLAIF, Lee et al. 2023): the expected 1-10 score a causal LM
gives a response under a principle, P over the digit tokens (zoo.judges.PointwiseScoreJudge).

    reward.functions.llm_judge: {weight: 1.0, principle: "How helpful is ...?", model: null}

`model`: null = the run's model (its starting weights, frozen); a conf/model name, a local dir or a hub id.
Also the usual base reward of RBR on the safety prompts: reward.functions.rbr.base=llm_judge.
"""

from __future__ import annotations

HELPFUL = "How helpful is the response to the user's request?"


def check_params(params: dict, path: str) -> None:
    from zoo.models import check_model_name

    check_model_name(params.get("model"), f"{path}.model")


def make_llm_judge(principle: str = HELPFUL, model: str | None = None, cfg=None):
    from zoo.judges import PointwiseScoreJudge, load_scorer

    if cfg is None:
        raise ValueError("llm_judge: needs the run config to find its model")
    fn = PointwiseScoreJudge(load_scorer(cfg, model), principle=principle)
    fn.__name__ = "llm_judge"
    return fn
