"""Which of the harness's signals a run trained on, from the scorers each stage called while training
(zoo.rewards.usage), so the table can say `gold = training signal` beside a score that is not held-out evidence."""

from __future__ import annotations

SIGNAL_COLUMNS = ("gold_reward", "proxy_reward", "independent_reward")


def trained_on(stage_scorers: dict[str, list[str]], policy_stages: list[str], *, gold: str | None,
               proxy: list[str], independent: str | None) -> tuple[list[str], dict[str, str]]:
    """(eval columns a policy stage optimised against, {column: note for the table}).

    `stage_scorers`: stage -> registry names of the scorers it called while training. A column used only by a
    stage that trains no policy (an `rm` stage's pair ranking) is noted but not counted: the policy optimised
    the reward model, and the gold that labelled its pairs is the over-optimisation check of that setting."""
    names = {"gold_reward": {gold} - {None}, "proxy_reward": set(proxy),
             "independent_reward": {independent} - {None}}
    columns, notes = [], {}
    for column in SIGNAL_COLUMNS:
        users = [stage for stage, used in stage_scorers.items() if names[column] & set(used)]
        optimising = [stage for stage in users if stage in policy_stages]
        short = column.split("_")[0]
        if optimising:
            columns.append(column)
            notes[column] = f"{short} = training signal ({', '.join(optimising)})"
        elif users:
            notes[column] = f"{short} labelled training data ({', '.join(users)}), not optimised directly"
    return columns, notes
