"""Item tables and history encoders: a user's recent items become a state vector.

A history is a batch of item ids ``items: [B, H]`` (oldest first), a boolean ``mask: [B, H]``
(True = a real step, False = padding) and optional per-step responses ``responses: [B, H, R]``
(e.g. click, rating / 5). Each step becomes a *response-gated* token

    z_t = x_t ⊙ (1 + G r_t) + U r_t        (x_t the item's vector, r_t its responses)

so a clicked movie and a skipped one enter the state differently (with the plain sum
x_t + U r_t, a mean could not tell *which* movie was clicked). Each encoder maps the tokens to
``state: [B, D]`` and keeps the order of the steps: the mean weights recent steps more, with a
learned decay; the GRU and the Transformer read the sequence. Padding never changes the state,
and an empty history gives the zero vector (all three encoders).

Every encoder takes an optional ``table`` ([N, D], from ``ItemTable.all()``): a caller that
also needs every item's vector (a Q-network scoring the catalogue) computes it once.
"""

from __future__ import annotations

import torch
from torch import nn


class ItemTable(nn.Module):
    """Item vectors ``[N, dim]``: frozen text vectors through a learned projection, plus
    optional learned ID embeddings. Text vectors let a model score items it never trained on;
    an ID embedding of an unseen item stays at its random start."""

    def __init__(
        self,
        n_items: int | None = None,
        dim: int = 64,
        *,
        text_vectors: torch.Tensor | None = None,
        use_ids: bool = True,
        id_init_std: float = 0.05,
    ):
        super().__init__()
        if text_vectors is None and not use_ids:
            raise ValueError("ItemTable needs text_vectors, use_ids=True, or both")
        if text_vectors is not None:
            if text_vectors.ndim != 2:
                raise ValueError(f"text_vectors must be [N, D], got {tuple(text_vectors.shape)}")
            if n_items is not None and n_items != text_vectors.shape[0]:
                raise ValueError(
                    f"n_items={n_items} but text_vectors has {text_vectors.shape[0]} rows"
                )
            n_items = text_vectors.shape[0]
            self.register_buffer("text_vectors", text_vectors.detach().float().clone())
            self.text_projection = nn.Linear(text_vectors.shape[1], dim, bias=False)
        else:
            self.text_vectors = None
        if n_items is None:
            raise ValueError("ItemTable needs n_items when no text_vectors are given")
        self.n_items, self.dim = n_items, dim
        self.id_embedding = nn.Embedding(n_items, dim) if use_ids else None
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=id_init_std)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """items: [...] long -> [..., dim]"""
        # Project the whole table, then look up: N·F·dim work instead of one projection per
        # looked-up item, cheaper as soon as a batch holds more ids than N. `embedding`, not
        # `table[items]`: the backward of indexing adds into rows in a thread-dependent order
        # on the CPU, so the same seed would not give the same numbers.
        return nn.functional.embedding(items, self.all())

    def all(self) -> torch.Tensor:
        """[N, dim]: every item's vector."""
        out = 0
        if self.text_vectors is not None:
            out = self.text_projection(self.text_vectors)
        if self.id_embedding is not None:
            out = out + self.id_embedding.weight
        return out

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class _HistoryEncoder(nn.Module):
    def __init__(self, items: ItemTable, n_responses: int = 0):
        super().__init__()
        self.items, self.n_responses, self.dim = items, n_responses, items.dim
        self.response_projection = nn.Linear(n_responses, items.dim) if n_responses else None
        # G of the module docstring: how each response rescales the item's vector
        self.response_gate = nn.Linear(n_responses, items.dim, bias=False) if n_responses else None

    def tokens(self, items, mask, responses, table=None) -> torch.Tensor:
        """Check shapes; one token per step, z_t = x_t ⊙ (1 + G r_t) + U r_t. -> [B, H, D]"""
        if items.ndim != 2 or items.dtype != torch.long:
            raise ValueError(
                f"items must be a [B, H] long tensor, got {items.dtype} {tuple(items.shape)}"
            )
        if mask.shape != items.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a [B, H] bool tensor like items, got {mask.dtype} "
                f"{tuple(mask.shape)}"
            )
        x = self.items(items) if table is None else nn.functional.embedding(items, table)
        if self.response_projection is not None:
            expected = (*items.shape, self.n_responses)
            if responses is None or tuple(responses.shape) != expected:
                got = None if responses is None else tuple(responses.shape)
                raise ValueError(f"responses must be [B, H, R] = {expected}, got {got}")
            r = responses.float()
            x = x * (1 + self.response_gate(r)) + self.response_projection(r)
        return x


def steps_ago(mask: torch.Tensor) -> torch.Tensor:
    """mask: [B, H] bool -> [B, H] float: how many real steps came after each step (the latest
    real step is 0 steps ago), whatever the padding's place."""
    later = mask.flip(1).cumsum(1).flip(1) - mask.long()
    return later.float()


class MeanHistoryEncoder(_HistoryEncoder):
    """state = recency-weighted mean of the tokens, s = Σ_t m_t δ^{a_t} z_t / Σ_t m_t δ^{a_t},
    where a_t is how many real steps ago step t was and the decay δ = sigmoid(θ) ∈ (0, 1) is
    learned (it starts at ``decay``). Order and *which* item got which response both count."""

    def __init__(self, items: ItemTable, n_responses: int = 0, *, decay: float = 0.9):
        super().__init__(items, n_responses)
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay_logit = nn.Parameter(torch.logit(torch.tensor(float(decay))))

    @property
    def decay(self) -> float:
        return torch.sigmoid(self.decay_logit).item()

    def forward(self, items, mask, responses=None, *, table=None) -> torch.Tensor:
        x = self.tokens(items, mask, responses, table)
        log_decay = nn.functional.logsigmoid(self.decay_logit)
        weights = (steps_ago(mask) * log_decay).exp() * mask.to(x.dtype)  # [B, H]
        weights = weights.unsqueeze(-1)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # >= 1 unless empty


class GRUHistoryEncoder(_HistoryEncoder):
    """state = GRU run over the real steps, oldest first; padding steps leave it unchanged."""

    def __init__(self, items: ItemTable, n_responses: int = 0):
        super().__init__(items, n_responses)
        self.cell = nn.GRUCell(items.dim, items.dim)

    def forward(self, items, mask, responses=None, *, table=None) -> torch.Tensor:
        x = self.tokens(items, mask, responses, table)
        h = x.new_zeros(x.shape[0], self.dim)
        for t in range(x.shape[1]):
            h = torch.where(mask[:, t, None], self.cell(x[:, t], h), h)
        return h


class TransformerHistoryEncoder(_HistoryEncoder):
    """state = mean of a small Transformer encoder's outputs over the real steps.

    Padding is excluded by ``src_key_padding_mask``; learned position embeddings give order.
    """

    def __init__(
        self,
        items: ItemTable,
        n_responses: int = 0,
        *,
        max_len: int = 64,
        n_layers: int = 1,
        n_heads: int = 4,
    ):
        super().__init__(items, n_responses)
        self.position = nn.Embedding(max_len, items.dim)
        nn.init.normal_(self.position.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            items.dim,
            n_heads,
            dim_feedforward=2 * items.dim,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, items, mask, responses=None, *, table=None) -> torch.Tensor:
        x = self.tokens(items, mask, responses, table)
        if x.shape[1] > self.position.num_embeddings:
            raise ValueError(
                f"history length {x.shape[1]} > max_len={self.position.num_embeddings}: "
                "build the encoder with a larger max_len"
            )
        x = x + self.position.weight[: x.shape[1]]
        empty = ~mask.any(dim=1)
        # An all-padding row would make attention divide by zero: let it see step 0, then zero it.
        key_padding = (~mask).clone()
        key_padding[empty, 0] = False
        out = self.encoder(x, src_key_padding_mask=key_padding)
        weights = mask.unsqueeze(-1).to(out.dtype)
        return (out * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pad_histories(histories: list[list[int]], length: int | None = None):
    """Right-pad lists of item ids: -> (items [B, H] long, mask [B, H] bool); keeps the latest."""
    length = length or max((len(h) for h in histories), default=1) or 1
    items = torch.zeros(len(histories), length, dtype=torch.long)
    mask = torch.zeros(len(histories), length, dtype=torch.bool)
    for row, history in enumerate(histories):
        recent = history[-length:]
        items[row, : len(recent)] = torch.as_tensor(recent, dtype=torch.long)
        mask[row, : len(recent)] = True
    return items, mask
