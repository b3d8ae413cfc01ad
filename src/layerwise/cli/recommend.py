"""``layerwise recommend MODEL_DIR --user U [--k 10] [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="a recommender's model directory, or "
                         "models:/NAME@ALIAS, models:/NAME/VERSION")],
    user: Annotated[str, typer.Option("--user", "-u", help="the user id, as in the "
                    "training data; an unknown user gets the cold-start answer")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="how many items")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as one JSON "
                       "object")] = False,
) -> None:
    """Recommend the top k items for a user (items seen in training left out)."""
    from layerwise.api import load
    from layerwise.errors import ConfigError
    from layerwise.files import dumps_json
    from layerwise.tracking.registry import resolve_model

    model = load(resolve_model(model_dir))
    if not hasattr(model, "recommend"):
        raise ConfigError(f"{model_dir} is not a recommender; use `layerwise predict`")
    answer = model.recommend(user, k)
    if as_json:
        print(dumps_json(answer))
        return
    why = {"model": "", "popularity": " (cold start: an unknown user gets the most "
           "popular items)", "features": " (cold start: an unknown user, scored from "
           "item features)"}[answer["source"]]
    print(f"top {len(answer['items'])} for user {answer['user']}{why}:")
    for rank, row in enumerate(answer["items"], 1):
        title = f"  {row['title']}" if "title" in row else ""
        print(f"{rank:>3}. {row['item']}{title}  ({row['score']:.4f})")
