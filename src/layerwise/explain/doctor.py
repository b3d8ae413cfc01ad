"""The training doctor: what went wrong in a run, with the evidence and a change to try.

    layerwise doctor runs/digits

It reads the run folder — ``history.csv`` (losses, metrics, learning rate, skipped steps,
per-layer gradient norms ``grad_norm/<layer>``, dead-unit shares ``dead_relu/<layer>``),
``metrics.json`` (final scores per split, timings), ``config.yaml`` and ``error.json`` —
and, unless told not to, rebuilds the splits from the config to look at the rows
themselves (duplicates shared by train and test, class shares).

Each rule returns at most one :class:`Finding`; the findings come out most fundamental
first (:data:`RANK`): a learning rate that blows up training makes every later symptom
(dead units, a poor fit) a consequence, rows leaked into the test split make its scores
meaningless, and so on down to throughput. The thresholds are written beside each rule.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.errors import ArtifactError

RANK = ["lr_too_high", "exploding_gradients", "duplicate_rows", "vanishing_gradients",
        "underfitting_capacity", "dead_relu", "underfitting", "overfitting",
        "class_imbalance", "slow_input"]
LOSS_SPIKE = 2.0        # an epoch's training loss above 2x the previous one's
VANISHING = 1e-3        # smallest layer's mean gradient norm / largest layer's
EXPLODING = 1e3         # a layer's mean gradient norm
DEAD = 0.5              # share of dead units in a ReLU layer, last epoch
OVERFIT_RISE = 1.25     # final validation loss / its best, best well before the end
OVERFIT_GAP = 0.15      # train - validation accuracy (or R2)
UNDERFIT_SCORE = 0.9    # training accuracy (or R2) below this ...
UNDERFIT_GAP = 0.05     # ... with validation within this of it
DUPLICATES = 0.01       # share of test rows also in the training split
IMBALANCE = 5.0         # largest / smallest class count in training
SLOW_MIN_SECONDS = 10.0  # training shorter than this: data preparation is a fixed cost


@dataclass
class Finding:
    """One diagnosis: what, why we think so, and what to change."""

    name: str
    title: str
    evidence: str
    change: str
    set: list[str] = field(default_factory=list)  # --set lines that make the change

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunView:
    """What the rules read."""

    path: Path
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    config: Any
    error: str | None = None
    data: Any = None       # the rebuilt Dataset, or None

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.history if key in r and not math.isnan(r[key])]

    def layers(self, prefix: str) -> list[str]:
        keys = dict.fromkeys(k for r in self.history for k in r if k.startswith(prefix))
        return list(keys)

    @property
    def lr(self) -> float:
        return float(self.config.train.optimizer.lr)


# ------------------------------------------------------------------------- reading a run
def read_run(path: str | Path, *, data: bool = True) -> RunView:
    """The run folder's history, metrics, config, error, and (``data``) its splits."""
    from layerwise.config import Config, parse

    p = Path(path)
    if not (p / "config.yaml").is_file():
        raise ArtifactError(f"{p} is not a run folder: it has no config.yaml")
    cfg = parse(p / "config.yaml")
    if not isinstance(cfg, Config):
        raise ArtifactError(f"{p}: the doctor reads supervised runs; this is an agent's")
    view = RunView(p, _history(p / "history.csv"), _json(p / "metrics.json"), cfg)
    err = _json(p / "error.json")
    view.error = str(err.get("error") or err.get("message") or err) if err else None
    if data:
        from layerwise.data.build import build

        view.data = build(cfg)
    return view


def _history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _num(v) for k, v in row.items() if k} for row in csv.DictReader(f)]


def _num(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})") from e
    return doc if isinstance(doc, dict) else {}


# ------------------------------------------------------------------------- the rules
def lr_too_high(v: RunView) -> Finding | None:
    """Skipped non-finite steps, an aborted run, a loss spike, or a classifier's loss
    above that of predicting uniform class shares (log K), all signs of steps too big."""
    loss = v.column("train_loss")
    skipped = int(max(v.column("skipped_steps") or [0]))
    chance = _chance_loss(v)
    why = []
    if v.error and ("non-finite" in v.error or "nan" in v.error.lower()):
        why.append(f"training aborted: {v.error[:160]}")
    if skipped:
        why.append(f"{skipped} steps skipped for a non-finite loss or gradient")
    spikes = [i for i in range(1, len(loss)) if loss[i] > LOSS_SPIKE * loss[i - 1]]
    if spikes:
        i = spikes[0]
        why.append(f"training loss jumped from {loss[i - 1]:.4g} to {loss[i]:.4g} at epoch "
                   f"{i + 1}")
    if chance is not None and loss and max(loss) > 2 * chance:
        i = int(np.argmax(loss))
        why.append(f"training loss {loss[i]:.4g} at epoch {i + 1} is over twice that of "
                   f"predicting uniform class shares ({chance:.3g})")
    if not why:
        return None
    lower = _fmt(v.lr / 10)
    return Finding("lr_too_high", "learning rate too high", "; ".join(why),
                   f"lower the learning rate ten-fold (from {_fmt(v.lr)}), or clip gradients",
                   [f"train.optimizer.lr={lower}"])


def exploding_gradients(v: RunView) -> Finding | None:
    worst = _layer_max(v, "grad_norm/")
    if worst is None or worst[1] < EXPLODING:
        return None
    return Finding("exploding_gradients", "exploding gradients",
                   f"mean gradient norm of {worst[0]} reached {worst[1]:.3g} "
                   f"(threshold {EXPLODING:g})", "clip the global gradient norm",
                   ["train.grad_clip=1.0"])


def vanishing_gradients(v: RunView) -> Finding | None:
    """Mean gradient norms (over epochs) that differ by more than a thousand-fold between
    the layers of one network: the smallest layers barely learn."""
    layers = v.layers("grad_norm/")
    if len(layers) < 3:
        return None
    means = {k: float(np.mean(v.column(k))) for k in layers if v.column(k)}
    if not means:
        return None
    low, high = min(means, key=lambda k: means[k]), max(means, key=lambda k: means[k])
    if means[high] <= 0 or means[low] / means[high] >= VANISHING:
        return None
    act = getattr(v.config.model, "activation", None)
    sets = ["model.activation=relu"] if act in ("sigmoid", "tanh") else []
    if hasattr(v.config.model, "norm"):
        sets.append("model.norm=layer")
    name = lambda k: k.removeprefix("grad_norm/")  # noqa: E731
    return Finding("vanishing_gradients", "vanishing gradients",
                   f"mean gradient norm of {name(low)} is {means[low]:.2e}, "
                   f"{means[low] / means[high]:.1e} times that of {name(high)} "
                   f"({means[high]:.2e}), over {len(layers)} layers"
                   + (f" with {act} activations" if act else ""),
                   "use a non-saturating activation and normalisation, or fewer layers",
                   sets)


def dead_relu(v: RunView) -> Finding | None:
    layers = v.layers("dead_relu/")
    last = {k: v.column(k)[-1] for k in layers if v.column(k)}
    bad = {k: s for k, s in last.items() if s > DEAD}
    if not bad:
        return None
    k = max(bad, key=lambda n: bad[n])
    return Finding("dead_relu", "dead ReLU units",
                   f"{bad[k]:.0%} of the units of {k.removeprefix('dead_relu/')} output zero "
                   f"for every row of a batch in the last epoch ({len(bad)} layer(s) above "
                   f"{DEAD:.0%})", "lower the learning rate or use an activation that keeps "
                   "a gradient below zero", [f"train.optimizer.lr={_fmt(v.lr / 3)}",
                                             "model.activation=leaky_relu"])


def underfitting_capacity(v: RunView) -> Finding | None:
    """A poor training score with a hidden layer narrower than the classes it separates."""
    poor = _poor_fit(v)
    widths = _widths(v.config.model)
    classes = _classes(v)
    if poor is None or not widths or classes is None or min(widths) >= classes:
        return None
    return Finding("underfitting_capacity", "underfitting: a bottleneck layer",
                   f"{poor}; the narrowest hidden layer has {min(widths)} unit(s) for "
                   f"{classes} classes", "widen the hidden layers",
                   [f"model.{_width_key(v.config.model)}=[{max(64, 4 * classes)}]"])


def underfitting(v: RunView) -> Finding | None:
    """A poor training score close to the validation one: more capacity, or (when the
    loss still falls at the end) more epochs or a larger learning rate."""
    poor = _poor_fit(v)
    if poor is None:
        return None
    loss = v.column("train_loss")
    falling = len(loss) >= 3 and loss[-1] < 0.97 * loss[-2]
    if falling:
        return Finding("underfitting", "underfitting: still learning at the end (learning "
                       "rate too low or too few epochs)",
                       f"{poor}; training loss still fell {1 - loss[-1] / loss[-2]:.0%} in "
                       f"the last epoch", "train longer or raise the learning rate",
                       [f"train.optimizer.lr={_fmt(v.lr * 3)}",
                        f"train.epochs={2 * int(v.config.train.epochs)}"])
    return Finding("underfitting", "underfitting", f"{poor}; the loss has levelled off",
                   "give the model more capacity", _bigger(v.config.model))


def overfitting(v: RunView) -> Finding | None:
    """Validation loss rising well above its best while training goes on, or a large
    gap between training and validation scores."""
    val, n = v.column("val_loss"), len(v.history)
    why = []
    if len(val) >= 4:
        best = int(np.argmin(val))
        if val[-1] > OVERFIT_RISE * val[best] and best < len(val) - 2:
            why.append(f"validation loss rose from its best {val[best]:.4g} (epoch "
                       f"{best + 1}) to {val[-1]:.4g} (epoch {len(val)})")
    tr, va, name = _scores(v)
    if tr is not None and va is not None and tr - va > OVERFIT_GAP:
        why.append(f"training {name} {tr:.3f} vs validation {va:.3f}")
    if not why:
        return None
    sets = [] if v.config.train.early_stopping else ["train.early_stopping.patience=5"]
    if hasattr(v.config.model, "dropout"):
        sets.append("model.dropout=0.3")
    sets.append("train.optimizer.weight_decay=0.01")
    return Finding("overfitting", "overfitting", "; ".join(why) + f" over {n} epochs",
                   "stop early, regularise (dropout, weight decay) or add data", sets)


def duplicate_rows(v: RunView) -> Finding | None:
    ds = v.data
    if ds is None or ds.test is None or not len(ds.test):
        return None
    seen = set(_row_keys(ds.train))
    test = _row_keys(ds.test)
    shared = sum(k in seen for k in test)
    if shared < 2 or shared / len(test) < DUPLICATES:
        return None
    return Finding("duplicate_rows", "rows shared between train and test",
                   f"{shared} of {len(test)} test rows ({shared / len(test):.0%}) have "
                   "inputs identical to a training row: the test scores overstate how the "
                   "model does on new rows", "remove duplicate rows from the source before "
                   "splitting, or split by a column that keeps copies together",
                   ["data.split.column=<a column naming each row's split>"])


def class_imbalance(v: RunView) -> Finding | None:
    ds = v.data
    if ds is None:
        return None
    from layerwise.data.features import CategoryEncoder

    for i, enc in enumerate(ds.schema.outputs):
        if not isinstance(enc, CategoryEncoder):
            continue
        counts = np.bincount(ds.train.targets[enc.name].numpy(), minlength=enc.size)
        counts = counts[counts > 0]
        if len(counts) < 2 or counts.max() / counts.min() < IMBALANCE:
            continue
        if getattr(v.config.outputs[i], "class_weights", None):
            continue
        return Finding("class_imbalance", "class imbalance",
                       f"output {enc.name!r}: the largest class has {counts.max()} training "
                       f"rows, the smallest {counts.min()} ({counts.max() / counts.min():.0f}"
                       "x)", "weight the classes by their inverse frequency",
                       [f"outputs.{i}.class_weights=balanced"])
    return None


def slow_input(v: RunView) -> Finding | None:
    t = v.metrics.get("training", {})
    data_s, train_s = t.get("data_seconds"), t.get("seconds")
    if not data_s or not train_s or train_s < SLOW_MIN_SECONDS or data_s <= train_s:
        return None
    batching = v.metrics.get("choices", {}).get("batching")
    sets = ["train.batching=memory"] if batching == "loader" else []
    return Finding("slow_input", "input pipeline slower than the model",
                   f"preparing the data took {data_s:.1f} s, training {train_s:.1f} s"
                   + (f" (batching: {batching})" if batching else ""),
                   "cache decoded inputs (e.g. a .npz of the arrays) or preload batches",
                   sets)


RULES: dict[str, Callable[[RunView], Finding | None]] = {
    "lr_too_high": lr_too_high, "exploding_gradients": exploding_gradients,
    "duplicate_rows": duplicate_rows, "vanishing_gradients": vanishing_gradients,
    "underfitting_capacity": underfitting_capacity, "dead_relu": dead_relu,
    "underfitting": underfitting, "overfitting": overfitting,
    "class_imbalance": class_imbalance, "slow_input": slow_input}


def diagnose(path: str | Path, *, data: bool = True) -> list[Finding]:
    """The findings for a run folder, most fundamental first (empty: nothing found)."""
    view = read_run(path, data=data)
    found = [f for name in RANK if (f := RULES[name](view)) is not None]
    if any(f.name == "underfitting_capacity" for f in found):
        found = [f for f in found if f.name != "underfitting"]
    return found


# ------------------------------------------------------------------------- helpers
def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _chance_loss(v: RunView) -> float | None:
    k = _classes(v)
    return math.log(k) if k and k > 1 else None


def _classes(v: RunView) -> int | None:
    from layerwise.data.features import CategoryEncoder

    if v.data is not None:
        sizes = [e.size for e in v.data.schema.outputs if isinstance(e, CategoryEncoder)]
        return sizes[0] if sizes else None
    labels = v.metrics.get("test", {}).get("labels") or v.metrics.get("train", {}).get(
        "labels")
    return len(labels) if labels else None


def _scores(v: RunView) -> tuple[float | None, float | None, str]:
    """Final training and validation scores: accuracy, else R2."""
    for key in ("accuracy", "r2"):
        tr = v.metrics.get("train", {}).get(key)
        va = v.metrics.get("validation", {}).get(key)
        if tr is not None:
            return tr, va, key
    return None, None, ""


def _poor_fit(v: RunView) -> str | None:
    tr, va, name = _scores(v)
    if tr is None or tr >= UNDERFIT_SCORE or (va is not None and tr - va > UNDERFIT_GAP):
        return None
    return f"training {name} is only {tr:.3f}" + (f" (validation {va:.3f})"
                                                  if va is not None else "")


def _layer_max(v: RunView, prefix: str) -> tuple[str, float] | None:
    best = None
    for k in v.layers(prefix):
        col = v.column(k)
        if col and (best is None or max(col) > best[1]):
            best = (k.removeprefix(prefix), max(col))
    return best


def _widths(model: Any) -> list[int]:
    w = getattr(model, "hidden", None) or getattr(model, "dense", None) or []
    return [int(x) for x in w]


def _width_key(model: Any) -> str:
    return "hidden" if getattr(model, "hidden", None) else "dense"


def _bigger(model: Any) -> list[str]:
    widths = _widths(model)
    if not widths:
        return ["train.epochs=<twice as many>"]
    return [f"model.{_width_key(model)}=[{', '.join(str(2 * w) for w in widths)}]"]


def _row_keys(data: Any) -> list[bytes]:
    """One digest per row of every input tensor (text: its ids), side by side; a digest
    keeps 60,000 Fashion-MNIST rows at 16 bytes each instead of a copy of the pixels."""
    import hashlib

    parts = [np.ascontiguousarray((v["ids"] if isinstance(v, dict) else v).numpy())
             for v in data.inputs.values()]
    keys = []
    for i in range(len(parts[0]) if parts else 0):
        h = hashlib.blake2b(digest_size=16)
        for p in parts:
            h.update(p[i].tobytes())
        keys.append(h.digest())
    return keys
