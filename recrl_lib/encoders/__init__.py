"""Items and users as vectors: a pretrained text encoder, item tables, history encoders, MF."""

from recrl_lib.encoders.features import item_features
from recrl_lib.encoders.history import (
    GRUHistoryEncoder,
    ItemTable,
    MeanHistoryEncoder,
    TransformerHistoryEncoder,
)
from recrl_lib.encoders.mf import MatrixFactorization, fit_bpr
from recrl_lib.encoders.text import (
    ModelNotFoundError,
    TextEncoder,
    item_texts,
    mean_pool,
    nearest_neighbours,
)

__all__ = [
    "GRUHistoryEncoder",
    "ItemTable",
    "MatrixFactorization",
    "MeanHistoryEncoder",
    "ModelNotFoundError",
    "TextEncoder",
    "TransformerHistoryEncoder",
    "fit_bpr",
    "item_features",
    "item_texts",
    "mean_pool",
    "nearest_neighbours",
]
