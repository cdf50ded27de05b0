"""The RA3 E-step under DeepSpeed refuses a KL reference (a copy of the whole model before the E-step, which
ZeRO-3 exists to avoid) with an error naming the key, before it builds anything (no DeepSpeed needed)."""

import dataclasses

import pytest
import torch

from repro.core.scale import RA3Config, TrainConfig
from repro.train.ra3 import em


def test_a_kl_reference_under_deepspeed_is_refused_naming_the_key():
    cfg = RA3Config(rounds=1, group_size=2, max_thought_tokens=4, temperature=1.0, penalty=0.05, estep_steps=1,
                    snippets_per_step=1, estep_lr=1e-3, kl_weight=0.1)
    mstep = TrainConfig(seq_len=8, batch_size=1, lr=1e-3, max_steps=1, warmup_steps=0,
                        deepspeed_config="configs/deepspeed/zero3.json")
    with pytest.raises(ValueError, match="ra3.kl_weight"):
        em.estep(None, None, None, [], cfg, torch.zeros(1), torch.Generator(), deepspeed=mstep)
    with pytest.raises(ValueError, match="ra3.kl_weight"):  # a reference given with kl_weight 0 as well
        em.estep(None, object(), None, [], dataclasses.replace(cfg, kl_weight=0.0), torch.zeros(1),
                 torch.Generator(), deepspeed=mstep)
