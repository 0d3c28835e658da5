"""Evaluation, pure functions on tensors and arrays, one concept a module:

- :mod:`~recrl_lib.evaluation.intervals`: confidence intervals, paired comparisons over
  training seeds, the on-policy summary table;
- :mod:`~recrl_lib.evaluation.ranking`: top-k ranking metrics, rating errors, and what a set
  of lists does to the catalogue and to users (coverage, novelty, diversity, Gini of exposure,
  how alike users' sets are);
- :mod:`~recrl_lib.evaluation.off_policy`: estimators of a policy's value from logged data;
- :mod:`~recrl_lib.evaluation.feedback_loop`: a recommender retrained on the data it shaped
  (the retrain loop on the simulator, its per-round measures, the Pólya urn).
"""

from recrl_lib.evaluation.feedback_loop import (
    clicks_by_user,
    far_from_mean,
    polya_share_variance,
    polya_urn,
    round_measures,
    run_feedback_loop,
)
from recrl_lib.evaluation.intervals import (
    compare_over_seeds,
    mean_ci,
    on_policy_report,
    paired_difference,
    policy_summary,
    seed_band,
    t_interval,
)
from recrl_lib.evaluation.ranking import (
    auc_per_user,
    catalogue_coverage,
    gini,
    gini_of_exposure,
    homogenisation,
    mean_pairwise_jaccard,
    mean_popularity,
)

__all__ = [
    "auc_per_user",
    "clicks_by_user",
    "far_from_mean",
    "catalogue_coverage",
    "gini",
    "gini_of_exposure",
    "homogenisation",
    "mean_popularity",
    "polya_share_variance",
    "polya_urn",
    "round_measures",
    "run_feedback_loop",
    "compare_over_seeds",
    "mean_ci",
    "mean_pairwise_jaccard",
    "on_policy_report",
    "paired_difference",
    "policy_summary",
    "seed_band",
    "t_interval",
]
