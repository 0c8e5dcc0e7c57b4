"""Pieces the zoo's online RL trainers share: the PPO math, with masks, free of models."""
