"""A tiny random Llama and a character tokenizer: the LM code path in tests, with no model
files and in milliseconds (the real model is tested once, in test_lm_policy.py)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

VOCAB = 64


class CharTokenizer:
    """Token ids are character codes folded into the vocabulary (id 0 is never used)."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[1 + ord(c) % (VOCAB - 1) for c in text])

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return self(text + ("<assistant>" if add_generation_prompt else "")).input_ids


def tiny_llama(seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        initializer_range=0.3,  # weights large enough that small adapters move the scores
    )
    return LlamaForCausalLM(config).eval().requires_grad_(False)
