"""The accuracy guard: a compressed child may lose at most P points of the main metric.

Parent and child are scored on the same rows, the validation split recorded in the run
(rebuilt from the stored config; the data hash must match the one recorded at training
time), or on a labelled file given instead. Each is scored as it will run: the child
through its own backend (an int8 child through its int8 graph), not through a stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layerwise.data.batching import TensorData, take
from layerwise.data.build import Dataset, build, encode_rows
from layerwise.errors import ConfigError, LayerwiseError
from layerwise.evaluation.metrics import evaluate_outputs
from layerwise.inference.predictor import Predictor
from layerwise.inference.seq2seq import exact_rows, sequence_output

# a main metric per output kind: (metric, higher is better)
MAIN = {"category": ("accuracy", True), "binary": ("accuracy", True),
        "numeric": ("r2", True), "next_token": ("nats_per_token", False),
        "sequence": ("exact_match", True)}
# metrics where lower is better; they are compared in their own units (nats, not points)
LOWER = frozenset({"nats_per_token", "perplexity", "mae", "rmse", "mse", "mape"})


class AccuracyGuardError(LayerwiseError, ValueError):
    """The accuracy guard refused a compressed model (the message gives both figures)."""


def validation_data(pred: Predictor, data: str | Path | None = None,
                    ds: Dataset | None = None) -> TensorData:
    """The rows the guard scores on: ``data`` (a labelled file) or the run's validation
    split (its test split when it had none), encoded with the parent's fitted schema;
    ``ds``: the run's data, when already built."""
    if data is not None:
        return encode_rows(pred.schema, pred.to_table(data), targets=True)[0]
    ds = ds if ds is not None else build(pred.config)
    recorded = pred.meta.get("lineage", {}).get("data_hash")
    if recorded and recorded != ds.data_hash:
        raise ConfigError(f"the data behind {pred.artifact.path} changed since training "
                          f"(hash {ds.data_hash} vs {recorded}); pass --data to score on")
    raw = ds.raw_validation if ds.raw_validation is not None else ds.raw_test
    if raw is None or not len(next(iter(raw.values()))):
        raise ConfigError(f"{pred.artifact.path}: the run has neither a validation nor a "
                          "test split; pass --data to score on")
    return pred.schema.encode(raw)


def main_metric(pred: Predictor, metric: str | None = None) -> str:
    """The metric the guard compares: ``metric`` if given, else by the first output's
    kind (accuracy for classes, R² for numbers)."""
    kind = pred.schema.outputs[0].kind
    if metric is not None:
        return metric
    if kind not in MAIN:
        raise ConfigError(f"the accuracy guard scores outputs of type "
                          f"{', '.join(sorted(MAIN))}; this model predicts {kind!r}")
    return MAIN[kind][0]


def outputs(pred: Predictor, data: TensorData, batch_size: int = 256
            ) -> dict[str, torch.Tensor]:
    """``pred``'s outputs on ``data`` through its backend, as the metrics read them: a
    language model's or a sequence model's per-token logits ``[B, T, V]`` become per-row
    sums batch by batch (the heads' ``row_stats``); a sequence output's exact match is the
    teacher-forced one (the same as greedy decoding), or decoded for real with beams."""
    heads = getattr(pred.model, "heads", {})
    outs: list[dict[str, torch.Tensor]] = []
    with torch.inference_mode():
        for s in range(0, len(data), batch_size):
            idx = torch.arange(s, min(len(data), s + batch_size))
            x = take(data.inputs, idx)
            out = {k: v.float() for k, v in pred._runner(x).items()}
            for name, head in heads.items():
                if hasattr(head, "row_stats") and out[name].dim() == 3:
                    out[name] = head.row_stats(out[name], take(data.targets[name], idx))
                if getattr(head, "kind", "") == "sequence" and _beams(pred) > 1:
                    out[name][:, 3] = exact_rows(pred.model, pred.schema, x,
                                                 take(data.targets[name], idx))
            outs.append(out)
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def _beams(pred: Predictor) -> int:
    enc = sequence_output(pred.schema)
    return int(enc.cfg.beams) if enc is not None else 1


def score(pred: Predictor, data: TensorData, metric: str) -> float:
    """``metric`` of ``pred`` (through its backend) on ``data``: in points (×100), or in
    its own units for a lower-is-better metric (nats per token, errors)."""
    metrics: dict[str, Any] = evaluate_outputs(pred.schema, outputs(pred, data), data.targets)
    if len(pred.schema.outputs) > 1:
        metrics = metrics[pred.schema.outputs[0].name]
    if metric not in metrics or not isinstance(metrics[metric], int | float):
        names = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        raise ConfigError(f"unknown metric {metric!r} for the guard; valid: "
                          f"{', '.join(names)}")
    return float(metrics[metric]) * (1.0 if metric in LOWER else 100.0)


def loss_of(metric: str, parent: float, child: float) -> float:
    """How much worse the child is: points lost, or the rise of a lower-is-better metric."""
    return child - parent if metric in LOWER else parent - child


def check(metric: str, parent: float, child: float, max_drop: float, what: str) -> None:
    """Refuse a child that loses more than ``max_drop`` points (or, for a lower-is-better
    metric such as nats per token, rises by more than ``max_drop`` in its units)."""
    lost = loss_of(metric, parent, child)
    if lost <= max_drop:
        return
    if metric in LOWER:
        raise AccuracyGuardError(f"accuracy guard: {what} raises {metric} from {parent:.4f} "
                                 f"to {child:.4f} ({lost:.4f} > --max-drop {max_drop:g}); "
                                 "nothing written")
    raise AccuracyGuardError(f"accuracy guard: {what} drops {metric} from {parent:.2f} to "
                             f"{child:.2f} ({lost:.2f} points > --max-drop "
                             f"{max_drop:g}); nothing written")
