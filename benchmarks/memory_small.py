"""Peak GPU memory of the small scale (Qwen2.5-1.5B on one 80 GB GPU), calculated from its settings.

A calculation, not a measurement (no GPU here): each stage's largest live tensors, from the model's
architecture and configs/scales/small.yaml, printed in GB with the total against the GPU. Run it after
changing a small-scale setting:

    python benchmarks/memory_small.py

Qwen2.5-1.5B's architecture (its config.json on the hub): 28 layers, hidden 1,536, MLP 8,960, 12
attention heads and 2 key/value heads of 128, vocabulary 151,936, tied embeddings, 1.54B parameters.
The model trains in fp32 master weights with bf16 autocast (repro.pipeline.load_trainable), so weights,
gradients and both Adam moments are 16 bytes per parameter. What only a GPU can show (allocator
fragmentation, cuBLAS workspaces, the CUDA context's ~1 GB) is left out; tools/gpu_check.sh measures.
"""

import dataclasses

from repro.core.scale import ScaleConfig, load_scale
from repro.train.ra3.scoring import HEAD_CHUNK_ELEMENTS


@dataclasses.dataclass(frozen=True)
class Architecture:
    layers: int = 28
    hidden: int = 1536
    intermediate: int = 8960
    kv_heads: int = 2
    head_dim: int = 128
    vocab: int = 151936
    parameters: float = 1.54e9


GB = 1e9
QWEN = Architecture()
SNIPPET_TOKENS = 286  # the paper's ~1B tokens over 3.5M snippets (repro/plan.py)


def stages(scale: ScaleConfig, arch: Architecture = QWEN) -> dict[str, dict[str, float]]:
    """Per stage, its largest memory terms in bytes."""
    train_state = 16 * arch.parameters  # fp32 weights, gradients, Adam's two moments
    ntp, ra3 = scale.ntp, scale.ra3
    rows, length = ntp.batch_size, ntp.seq_len
    # Checkpointed layers keep their input (bf16) between forward and backward; one layer's activations
    # are recomputed at a time (attention with SDPA keeps no length x length matrix).
    checkpoints = arch.layers * rows * length * arch.hidden * 2
    layer = rows * length * (4 * arch.hidden + 2 * arch.intermediate) * 2
    logits = rows * length * arch.vocab * 4 * 2  # the loss's fp32 logits and their gradient
    out = {"NTP / M-step": {"weights, gradients, Adam (fp32)": train_state, "checkpointed activations": checkpoints,
                            "one layer recomputed": layer, "fp32 logits and their gradient": logits}}
    estep_rows = ra3.snippets_per_step * ra3.group_size
    estep_length = SNIPPET_TOKENS + 4 * ra3.max_thought_tokens  # a snippet and a few thoughts
    # The rollout's cache holds each row's real tokens only (packed: discarded tokens and rows sitting
    # out a forward take no column), plus, inside one layer's attention at a time, the gathered copy of
    # that layer for the rows of the forward. Keys and values in bf16 under autocast on CUDA.
    kv_layer = 2 * arch.kv_heads * arch.head_dim * 2
    kv = arch.layers * kv_layer
    chunk = HEAD_CHUNK_ELEMENTS * 4 * 3  # one chunk's logits, scaled copy and softmax terms
    micro = min(ra3.policy_micro_batch, estep_rows)
    # The policy loss runs `policy_micro_batch` rows at a time under bf16 autocast, with the M-step's
    # gradient checkpointing: layer inputs kept, one layer recomputed.
    policy = (arch.layers * micro * estep_length * arch.hidden * 2
              + micro * estep_length * (6 * arch.hidden + 2 * arch.intermediate) * 2)
    whole = arch.layers * estep_rows * estep_length * (6 * arch.hidden + 2 * arch.intermediate) * 4
    out["E-step"] = {"weights, gradients, AdamW (fp32)": train_state,
                     "rollout KV cache (all rows, real tokens)": estep_rows * estep_length * kv,
                     "one layer's gathered keys and values": estep_rows * estep_length * kv_layer,
                     f"policy-loss activations ({micro} rows, bf16, checkpointed)": policy,
                     "LM head, one chunk of positions": chunk}
    infusion_rows = ra3.rollout_batch_size
    out["infusion"] = {"weights (fp32)": 4 * arch.parameters,
                       "rollout KV cache (real tokens)": infusion_rows * estep_length * kv,
                       "one layer's gathered keys and values": infusion_rows * estep_length * kv_layer,
                       "LM head at decisions": chunk}
    full_logits = estep_rows * estep_length * arch.vocab * 4 * 4  # 4 fp32 rows x length x vocabulary tensors
    out["(as before) the E-step without chunks or micro-batches"] = {
        "scoring: 4 fp32 tensors of rows x length x vocabulary": full_logits,
        "policy-loss activations, all rows at once in fp32": whole}
    return out


def peak(scale: ScaleConfig, arch: Architecture = QWEN) -> float:
    """The largest stage's total, in bytes (what tests/unit/test_scale_configs.py checks against 80 GB)."""
    return max(sum(terms.values()) for stage, terms in stages(scale, arch).items() if not stage.startswith("("))


def main() -> None:
    scale = load_scale("small")
    print(f"Qwen2.5-1.5B at the small scale (configs/scales/small.yaml), one {scale.hardware.device}; GB:")
    for stage, terms in stages(scale).items():
        print(f"\n{stage}: {sum(terms.values()) / GB:.1f} GB")
        for name, size in terms.items():
            print(f"  {name:48s} {size / GB:7.2f}")


if __name__ == "__main__":
    main()
