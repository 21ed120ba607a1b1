"""Baselines RTB is compared with: guidance (biased), RL and importance sampling (later)."""
