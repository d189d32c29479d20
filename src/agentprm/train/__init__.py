"""Training stages: `sft` (behaviour cloning), `prm` (process reward model on Monte Carlo targets),
`dpo` / `inverse` (policy and reward updates); the paper's math lives in `losses` as pure functions."""
