"""Items and users as vectors: a pretrained text encoder, item tables, history encoders, MF,
and what the recommender knows about its catalogue."""

from recrl_lib.encoders.features import (
    CatalogueStats,
    catalogue_stats,
    fit_recommender_mf,
    item_features,
)
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
    "CatalogueStats",
    "GRUHistoryEncoder",
    "ItemTable",
    "MatrixFactorization",
    "MeanHistoryEncoder",
    "ModelNotFoundError",
    "TextEncoder",
    "TransformerHistoryEncoder",
    "catalogue_stats",
    "fit_bpr",
    "fit_recommender_mf",
    "item_features",
    "item_texts",
    "mean_pool",
    "nearest_neighbours",
]
