"""A language model as the recommender: it re-ranks a retriever's candidates (lesson 09).

A non-oracle retriever of the course proposes C candidates for each observation; the LM reads
a prompt written from the session's log (:mod:`recrl_lib.encoders.prompts`) and scores each
candidate's title by its log-likelihood ℓ_c = log p(title_c | prompt). The policy is the
softmax over the candidates,

    π_θ(c | s) = exp(ℓ_c / (τ n_c^α)) / Σ_c' exp(ℓ_c' / (τ n_c'^α)),

with n_c the title's tokens, α = 1 to length-normalise (α = 0: the raw sum, which favours
short titles) and a temperature τ (τ > 1 flattens a peaked model, so that a group of draws
tries more than one candidate; trl's GRPO samples at a temperature too). Fine-tuning adds LoRA
adapters (:func:`add_lora`), so the reference policy π_ref of GRPO's KL term is the same network
with the adapters switched off: no second copy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pandas as pd
import torch
from tqdm.auto import trange

from recrl_lib.agents.baselines import Observation, Policy
from recrl_lib.agents.behaviour import StochasticPolicy
from recrl_lib.encoders.language_model import candidate_log_likelihoods
from recrl_lib.encoders.prompts import chat_prompts, session_text, title_tokens


def add_lora(model, *, rank: int = 8, alpha: float = 16.0, seed: int = 0, targets=None):
    """The model with LoRA adapters (W + (α / r) · B A, B = 0 at the start, so the adapted
    model starts as the reference) on the attention's query and value projections; only the
    adapters train. ``seed`` fixes A's initialisation."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(targets or ("q_proj", "v_proj")),
        bias="none",
    )
    return get_peft_model(model, config)


class LMRecommender:
    """The LM re-ranker over a retriever's ``n_candidates`` candidates; see the module
    docstring. ``history_steps`` steps of the session go into the prompt and, given
    ``user_past`` ([U, L] item ids from :func:`recrl_lib.encoders.prompts.user_past`: the
    training split), what a returning user liked before."""

    def __init__(
        self,
        model,
        tokenizer,
        titles: list[str],
        retriever: Policy,
        *,
        n_candidates: int = 8,
        history_steps: int = 4,
        length_normalise: bool = True,
        temperature: float = 1.0,
        user_past: torch.Tensor | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if n_candidates < 2:
            raise ValueError(f"n_candidates must be >= 2 (one is no choice), got {n_candidates}")
        if len(titles) != retriever.n_items:
            raise ValueError(f"{len(titles)} titles for {retriever.n_items} items")
        self.model, self.tokenizer, self.titles = model, tokenizer, titles
        self.retriever, self.n_candidates = retriever, n_candidates
        self.history_steps, self.length_normalise = history_steps, length_normalise
        self.n_items, self.temperature = retriever.n_items, temperature
        self._title_ids = title_tokens(titles, tokenizer)
        self.user_past = user_past

    def candidates(self, obs: Observation) -> torch.Tensor:
        """The retriever's top C valid items, best first -> [B, C] long."""
        return self.retriever.rank(obs, self.n_candidates)

    def title_ids(self, candidates: torch.Tensor) -> list[list[list[int]]]:
        """The token ids of each candidate's title: candidates [B, C] -> B lists of C lists."""
        return [[self._title_ids[int(i)] for i in row] for row in candidates.cpu()]

    def prompts(self, obs: Observation) -> list[list[int]]:
        """The token ids of each row's prompt."""
        texts = session_text(obs, self.titles, last=self.history_steps, past=self.user_past)
        return chat_prompts(texts, self.tokenizer)

    @contextlib.contextmanager
    def reference(self):
        """Inside: the reference model (LoRA adapters off), if the model has adapters."""
        if hasattr(self.model, "disable_adapter"):
            with self.model.disable_adapter():
                yield
        else:
            yield

    def log_probs(
        self, obs: Observation, candidates: torch.Tensor | None = None, prompts=None
    ) -> torch.Tensor:
        """log π(c | s) over each row's candidates -> [B, C] (rows sum to 1 in probability).
        Differentiable in the adapters; wrap in ``torch.no_grad()`` to serve."""
        candidates = self.candidates(obs) if candidates is None else candidates
        prompts = self.prompts(obs) if prompts is None else prompts
        ll, lengths = candidate_log_likelihoods(self.model, prompts, self.title_ids(candidates))
        if self.length_normalise:
            ll = ll / lengths
        return (ll / self.temperature).log_softmax(1)

    def _scores(self, obs: Observation) -> torch.Tensor:
        """[B, N]: log π on the candidates, −inf elsewhere."""
        candidates = self.candidates(obs)
        with torch.no_grad():
            log_pi = self.log_probs(obs, candidates)
        scores = torch.full((len(candidates), self.n_items), -float("inf"), device=log_pi.device)
        return scores.scatter(1, candidates.to(log_pi.device), log_pi).to(obs["items"].device)

    def greedy(self, name: str = "LM re-ranker") -> Policy:
        """Serve the most likely candidate (``rank(obs, k)``: the top k of the re-ranked list)."""
        return Policy(name, self._scores, self.n_items, valid=self.valid_candidates)

    def sampling(self, name: str = "LM re-ranker (sampled)", seed: int = 0) -> StochasticPolicy:
        """Serve a draw from π over the candidates, saying its probability (for logs and
        off-policy estimators)."""
        return StochasticPolicy(name, lambda obs: self._scores(obs).exp(), self.n_items, seed=seed)

    def valid_candidates(self, obs: Observation) -> torch.Tensor:
        """[B, N] bool: the retriever's candidates of each row (what the re-ranker may show)."""
        valid = torch.zeros(obs["items"].shape[0], self.n_items, dtype=torch.bool)
        valid = valid.to(obs["items"].device)
        return valid.scatter(1, self.candidates(obs), True)


def sft_loss(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning on logged choices: −mean log π(target | s). log_probs [P, C],
    targets [P] candidate indices."""
    return -log_probs.gather(1, targets[:, None]).mean()


def train_sft(
    recommender: LMRecommender,
    sample_examples: Callable[[int], tuple[object, torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    learning_rate: float = 1e-3,
    max_grad_norm: float = 1.0,
    progress: bool = True,
) -> pd.DataFrame:
    """Fine-tune the adapters to imitate logged choices (the TALLRec-style baseline).

    ``sample_examples(step)`` returns (states with ``.obs``, their candidates [P, C], the index
    of the logged choice among them [P]). Returns one row per step: loss and seconds."""
    params = [p for p in recommender.model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has nothing to train: add LoRA adapters first (add_lora)")
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    rows = []
    recommender.model.train()
    for step in trange(steps, desc="SFT", disable=not progress, leave=False):
        clock = time.perf_counter()
        states, candidates, targets = sample_examples(step)
        log_probs = recommender.log_probs(states.obs, candidates)
        loss = sft_loss(log_probs, targets.to(log_probs.device))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        rows.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - clock})
    recommender.model.eval()
    return pd.DataFrame(rows)
