"""Baselines RTB is compared with: guidance and DPS (biased), KL-regularised RL (DPOK,
DDPO) and self-normalised importance sampling; `rtb_lab.evaluate` runs them side by side."""
