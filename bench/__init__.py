"""Benchmarks that compare the zoo against plain TRL scripts (`make bench`); see bench/dpo.py."""
