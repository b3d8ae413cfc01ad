"""The model card: what the model is, what it was trained on, how well it does."""

from __future__ import annotations

from typing import Any

DEFAULT_USE = ("Trained for the task above on the data named above; it has not been checked "
               "on data from other sources. Predictions for inputs unlike the training data "
               "(see reference.json for its statistics) are unreliable.")


def card_fields(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """The config's ``card:`` section as (title, text), in the card's order; an old or
    missing section gives none. Intended use falls back to :data:`DEFAULT_USE`."""
    from layerwise.config.base import CardConfig

    raw = cfg.get("card") if isinstance(cfg.get("card"), dict) else {}
    fields = CardConfig.model_validate(raw).fields()
    if not any(t == "Intended use" for t, _ in fields):
        fields.append(("Intended use", DEFAULT_USE))
    return fields


def model_card(meta: dict[str, Any], metrics: dict[str, Any], info: dict[str, Any]) -> str:
    cfg = meta["config"]
    lines = [f"# Model card: {cfg['name']}", "",
             "Written by layerwise at the end of training.", "",
             "## Model", "",
             f"- family: `{cfg['model']['family']}`",
             f"- parameters: {meta.get('parameters', 'n/a'):,}" if isinstance(
                 meta.get("parameters"), int) else "- parameters: n/a",
             "- inputs: " + ", ".join(f"{i['name']} ({i['type']})" for i in cfg["inputs"]),
             "- outputs: " + ", ".join(f"{o['name']} ({o['type']})" for o in cfg["outputs"]),
             "", "## Data", "",
             f"- source: {info.get('source')}",
             f"- rows: {info.get('rows')}",
             f"- skipped bad rows: {info.get('skipped_bad_rows', 0)}",
             f"- data hash: `{meta['lineage'].get('data_hash')}`", "",
             "## Training", "",
             f"- epochs: {cfg['train']['epochs']}, batch size {cfg['train']['batch_size']}, "
             f"optimizer {cfg['train']['optimizer']['name']} "
             f"(lr {cfg['train']['optimizer']['lr']}), schedule "
             f"{cfg['train']['schedule']['name']}",
             f"- seed: {cfg['seed']}; config hash `{meta['lineage'].get('config_hash')}`",
             f"- hardware choices: {meta.get('choices', {})}", "",
             "## Evaluation", ""]
    for split in ("train", "validation", "test"):
        m = metrics.get(split)
        if not m:
            continue
        scalars = {k: v for k, v in m.items() if isinstance(v, int | float)}
        lines.append(f"- {split}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
    test = metrics.get("test") or {}
    if "per_class" in test:
        lines += ["", "Per class on the test split:", "",
                  "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        for lab, r in test["per_class"].items():
            lines.append(f"| {lab} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
                         f"| {r['support']} |")
    lines += ["", "## Intended use and limitations", ""]
    lines += [f"- {title}: {text}" for title, text in card_fields(cfg)]
    lines += ["- Calibration has not been measured (`layerwise calibrate` measures it).", ""]
    return "\n".join(lines)
