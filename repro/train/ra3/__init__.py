"""RA3 mid-training (arXiv:2509.25810, section 2): an EM loop whose E-step learns, by self-supervised
RL, where to write comment thoughts into expert code, and whose M-step trains next-token prediction
on the infused code. Read in this order:

- `thoughts.py`: the line-level MDP, decision points, the thought format, infused texts;
- `scoring.py`: teacher-forced rewards and action log-probabilities;
- `rollout.py`: sampling thoughts for a batch of snippets through one KV cache;
- `em.py`: the E-step update, corpus infusion and the EM loop (the M-step is `repro.train.ntp`);
- `diagnostics.py`: curves, thought placement and examples of a finished run.

Settings: `RA3Config` in repro/core/scale.py, values in configs/scales/<scale>.yaml.
"""
