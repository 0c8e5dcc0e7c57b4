"""PPOConfig: TrainingArguments plus the knobs of PPO-style RLHF, each with help text (TRL's style).

One optimizer step happens per mini-batch; one *training step* (`max_steps`, `save_steps`, `logging_steps`)
is one PPO iteration: a rollout of `per_device_train_batch_size` prompts, then `num_ppo_epochs` passes of
`num_mini_batches` updates over it. Knob names match the zoo's GRPO/RLOO configs where the concept is the
same (`max_completion_length`, `temperature`, `top_p`, `top_k`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class PPOConfig(TrainingArguments):
    # Rollouts
    max_completion_length: int = field(default=32, metadata={"help": "Tokens sampled per completion."})
    temperature: float = field(default=1.0, metadata={
        "help": "Sampling temperature; log-probs are computed from logits divided by it, so the ratio and KL "
                "are measured under the distribution that was sampled."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 = off)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0 = off)."})
    # Reward shaping
    missing_eos_penalty: float | None = field(default=None, metadata={
        "help": "Subtracted from the score of completions that did not end with EOS within the budget."})
    reward_clip: float | None = field(default=None, metadata={"help": "Clip scores to [-reward_clip, reward_clip]."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten per-token rewards (variance only)."})
    # KL penalty
    kl_coef: float = field(default=0.05, metadata={"help": "Initial coefficient of the per-token KL penalty."})
    kl_estimator: str = field(default="k1", metadata={
        "help": "Per-token KL estimator. Possible values are: `k1`, `k3`. k1 = log p - log q; k3 is unbiased, "
                "non-negative and lower variance."})
    adaptive_kl: bool = field(default=False, metadata={
        "help": "Adapt kl_coef so the measured sequence KL tracks target_kl (Ziegler et al. 2019)."})
    target_kl: float = field(default=6.0, metadata={"help": "Target sequence KL (nats) of the adaptive controller."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon (in samples) of the adaptive controller."})
    # Advantages and losses
    gamma: float = field(default=1.0, metadata={"help": "Discount factor of GAE."})
    lam: float = field(default=0.95, metadata={"help": "Lambda of GAE (bias/variance trade-off)."})
    whiten_advantages: bool = field(default=True, metadata={"help": "Whiten advantages over the rollout."})
    cliprange: float = field(default=0.2, metadata={"help": "Clip range of the policy ratio."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Clip range of the value update."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    entropy_coef: float = field(default=0.0, metadata={"help": "Weight of the entropy bonus (0 = off)."})
    ptx_coef: float = field(default=0.0, metadata={
        "help": "PPO-ptx (Ouyang et al. 2022): weight of a log-likelihood term on supervised rows (the stage's own "
                "prompt/completion rows) added to every PPO mini-batch loss, which keeps the policy near the "
                "distribution it learned in SFT (0 = plain PPO)."})
    ptx_data: str | None = field(default=None, metadata={
        "help": "PPO-ptx: a conf/data name whose training rows (prompt/completion) feed the ptx term in place of the "
                "stage's own rows, standing in for the paper's pretraining mix (e.g. arithmetic; null: the stage's "
                "rows)."})
    ptx_batch_size: int | None = field(default=None, metadata={
        "help": "Supervised rows per PPO mini-batch for the ptx term (None = the PPO mini-batch size)."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "Optimisation passes over each rollout."})
    num_mini_batches: int = field(default=1, metadata={"help": "Mini-batches per pass; one optimizer step each."})
    # Value model
    value_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the value model (None = learning_rate)."})
    critic_warmup_steps: int = field(default=0, metadata={
        "help": "First iterations train the value model only (the policy is left alone until the critic is sane)."})
    value_model_path: str | None = field(default=None, metadata={
        "help": "Initial weights of the value model; None = the reward model of an earlier `rm` stage if there is "
                "one, else the policy's starting weights with a fresh scalar head."})

    def __post_init__(self):
        super().__post_init__()
        if self.ptx_coef < 0:
            raise ValueError(f"ptx_coef={self.ptx_coef}: expected a weight >= 0 (0 = plain PPO)")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator={self.kl_estimator!r}: expected 'k1' or 'k3'")
        if self.per_device_train_batch_size % self.num_mini_batches:
            raise ValueError(f"per_device_train_batch_size={self.per_device_train_batch_size} must be divisible by "
                             f"num_mini_batches={self.num_mini_batches}")
