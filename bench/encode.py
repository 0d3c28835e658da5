"""Encode all 1,682 MovieLens item texts cold, then again from the cache; print items/s and
the ratio.

HF_HUB_OFFLINE=1 .venv/bin/python bench/encode.py
"""

from __future__ import annotations

import tempfile
import time

from recrl_lib import get_device
from recrl_lib.datasets import load_movielens_100k
from recrl_lib.encoders import TextEncoder, item_texts


def main() -> None:
    texts = item_texts(load_movielens_100k())
    with tempfile.TemporaryDirectory() as cache:
        cold_encoder = TextEncoder(cache_dir=cache)
        start = time.perf_counter()
        cold_encoder.encode(texts, progress=False)
        cold = time.perf_counter() - start

        warm_encoder = TextEncoder(cache_dir=cache)  # a new session: the model is loaded, unused
        start = time.perf_counter()
        warm_encoder.encode(texts, progress=False)
        warm = time.perf_counter() - start
        assert warm_encoder.model_calls == 0
    n = len(texts)
    print(f"device {get_device()}, {n} items, model {cold_encoder.source}")
    print(f"cold encode  : {cold:7.3f} s  {n / cold:10.0f} items/s")
    print(f"cached encode: {warm:7.3f} s  {n / warm:10.0f} items/s")
    print(f"cache speed-up: {cold / warm:.0f}x")


if __name__ == "__main__":
    main()
