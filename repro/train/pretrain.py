"""The tiny base model: a byte-level BPE tokenizer and a small Llama trained from scratch here.

Both are saved with `save_pretrained`, so every later stage loads them with `AutoTokenizer` and
`AutoModelForCausalLM` exactly as it loads a hub model. Training is `repro.train.ntp.train_causal_lm` on
the tiny world's pretraining corpus (functions whose skill blocks carry their intent as a comment
about half of the time); sizes, with the measurements behind
them, are in `configs/scales/tiny.yaml`.
"""

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from repro.core import ranks
from repro.core.scale import TinyModelConfig, TokenizerConfig

log = logging.getLogger(__name__)

EOS, PAD = "<|endoftext|>", "<|pad|>"


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, out_dir: Path):
    """Byte-level BPE (every byte representable, so any code round-trips) as PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, bos_token=EOS, pad_token=PAD,
                                        clean_up_tokenization_spaces=False)
    if ranks.is_main():  # every rank trains the same tokenizer (deterministic); one writes it
        tokenizer.save_pretrained(out_dir)
    return tokenizer


def init_model(tokenizer, cfg: TinyModelConfig, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    log.info("tiny Llama: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    return model
