"""Recommendation: implicit-feedback collaborative filtering with ranking evaluation.

    >>> import layerwise as lw                                        # doctest: +SKIP
    >>> run = lw.train("examples/movielens_ncf.yaml", output="runs/movielens")
    >>> lw.load(run.model_dir).recommend(7, k=10)                    # doctest: +SKIP
    {'user': '7', 'cold_start': False, 'source': 'model', 'items': [...]}

A config with an ``interactions`` key is a recommendation run
(:class:`layerwise.config.RecommendConfig`). The pieces: ``data`` (reading, the
leave-last-out split, negative and candidate sampling), ``metrics`` (HR@k, NDCG@k,
popularity), ``models`` (mf, neumf, two_tower), ``sequential`` (sasrec, over each user's
history in time order), ``families`` (the registry), ``ranking`` (a split's evaluation),
``recommender`` (the artifact and its answers), ``runner`` (the run, on the Trainer).
"""

from layerwise.recommend.recommender import Recommender
from layerwise.recommend.runner import train_recommender

__all__ = ["Recommender", "train_recommender"]
