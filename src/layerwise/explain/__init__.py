"""Explanations and diagnosis: attributions, attention maps, global importance, the
training doctor, adversarial robustness and the one-page HTML report of a run.

    >>> m = lw.load("runs/fashion/model")                        # doctest: +SKIP
    >>> ex = m.explain(images[:4], method="integrated_gradients", output_dir="out/")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from layerwise.explain.attributions import METHODS, Explanation

__all__ = ["METHODS", "Explanation", "explain", "save"]


def explain(predictor: Any, rows: Any, *, method: str = "integrated_gradients",
            output_dir: str | Path | None = None, **options: Any) -> Explanation:
    """Attributions for ``rows`` by ``method`` (one of :data:`METHODS`, or ``attention``
    for a transformer's attention maps); with ``output_dir``, also explanation.json and
    one PNG per row there."""
    from layerwise.explain import attributions

    if method == "attention":
        if options.get("output") is not None or options.get("target") is not None:
            from layerwise.errors import ConfigError

            raise ConfigError("attention maps are the model's own; output and target do "
                              "not apply to method attention")
        ex = attributions.attention(predictor, rows)
    else:
        ex = attributions.explain(predictor, rows, method=method, **options)
    if output_dir is not None:
        save(ex, Path(output_dir))
    return ex


def save(ex: Explanation, out_dir: Path) -> list[Path]:
    """explanation.json and the pictures (row<i>_<method>.png) in ``out_dir``."""
    from layerwise.explain.render import draw
    from layerwise.files import dumps_json, write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = draw(ex, out_dir)
    doc = ex.to_json() | {"pictures": [p.name for p in pictures]}
    path = out_dir / "explanation.json"
    write_text(path, dumps_json(doc, indent=1))
    return [path, *pictures]
