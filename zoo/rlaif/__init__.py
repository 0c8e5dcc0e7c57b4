"""RL from AI feedback: the constitution, critique -> revision (SL-CAI), and AI preference labels."""
