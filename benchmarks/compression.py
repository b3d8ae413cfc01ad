"""Compression and backends on a trained model: size, latency at batch 1/8/64 per backend,
the guard's metric before/after, the autotune pick against the best measured backend, the
guard's refusal of a destructive setting, and (with ``distill``) the student trained alone.

    nice -n 5 .venv/bin/python benchmarks/compression.py /work/models/fashion/model \\
        --work /tmp/bench/fashion --methods int8-static,int8,bf16,prune,distill
    nice -n 5 .venv/bin/python benchmarks/compression.py /work/models/sentiment_lstm/model \\
        --work /tmp/bench/sentiment --methods int8,bf16 --metric macro_f1

The model folder is copied into ``--work`` first (the original is only read). Every
(artifact, backend) pair is timed in the same interleaved rounds (compress/bench.py:
warm-up excluded, the order reshuffled each round), so the ratios are comparable even on
a loaded machine; the medians and p99 are over all calls of a pair. Prints a markdown
table and writes everything to ``--work/result.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from layerwise import artifact as art
from layerwise.compress import AccuracyGuardError, Options, bench, compress, export
from layerwise.compress.bench import summary, time_calls, warm
from layerwise.compress.distill import student_config
from layerwise.compress.guard import main_metric, score, validation_data
from layerwise.data.augment import Augmenter
from layerwise.data.build import build
from layerwise.errors import LayerwiseError
from layerwise.files import dumps_json, write_text
from layerwise.inference.predictor import Predictor
from layerwise.models import build_model
from layerwise.training import Trainer
from layerwise.training.hardware import cpu_kind, cpu_model

PARENT_BACKENDS = ("eager", "compiled", "bf16", "onnxruntime", "onnxruntime-int8")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def children(parent: Path, work: Path, methods: list[str], args: argparse.Namespace
             ) -> dict[str, Any]:
    """Compress with each method (guarded); the refused ones keep their message."""
    out: dict[str, Any] = {}
    for method in methods:
        made = work / method / art.META
        if args.reuse and made.is_file() and "compression" in art.read_header(work / method):
            out[method] = {"record": art.read_header(work / method)["compression"],
                           "dir_bytes": folder_bytes(work / method), "reused": True}
            continue
        t0 = time.perf_counter()
        epochs = args.distill_epochs if method == "distill" else args.epochs
        opts = Options(amount=args.amount, epochs=epochs, width=args.width,
                       max_drop=args.max_drop, metric=args.metric)
        try:
            rec = compress(parent, method, work / method, opts, overwrite=True)
            out[method] = {"record": rec, "seconds": round(time.perf_counter() - t0, 1),
                           "dir_bytes": folder_bytes(work / method)}
        except AccuracyGuardError as e:
            out[method] = {"refused": str(e)}
        print(f"{method}: {out[method].get('record', out[method]).get('metric', out[method])}",
              file=sys.stderr)
    return out


def refusal(parent: Path, work: Path, metric: str | None) -> dict[str, Any]:
    """The guard against pruning 95% without fine-tuning: message and parent hashes."""
    before = digest(parent)
    try:
        compress(parent, "prune", work / "prune95",
                 Options(amount=0.95, epochs=0, max_drop=1.0, metric=metric), overwrite=True)
        msg = "NOT REFUSED"
    except AccuracyGuardError as e:
        msg = str(e)
    except LayerwiseError as e:  # e.g. a family that structured pruning does not cover
        msg = f"not applicable: {e}"
    return {"message": msg, "parent_hash_before": before, "parent_hash_after": digest(parent),
            "written": (work / "prune95").exists()}


def student_alone(parent: Path, width: float, epochs: int, metric: str) -> dict[str, Any]:
    """The distillation student's architecture trained without a teacher, same epochs."""
    teacher = Predictor.load(parent, backend="eager")
    cfg = student_config(teacher.config, width)
    ds = build(teacher.config)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.outputs, teacher.schema.describe())
    train_cfg = cfg.train.model_copy(update={"epochs": epochs, "early_stopping": None})
    images = {e.name: e.cfg.augment for e in ds.schema.images}
    Trainer(train_cfg, augment=Augmenter(images, cfg.seed)).fit(model, ds.train, ds.validation)
    model = model.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    pred = Predictor(art.Artifact(parent, cfg, teacher.schema, model, teacher.meta), "eager")
    return {metric: round(score(pred, validation_data(teacher, None, ds), metric), 3),
            "parameters": sum(p.numel() for p in model.parameters())}


def timing(parent: Path, work: Path, made: dict[str, Any], args: argparse.Namespace
           ) -> dict[str, Any]:
    """Every (artifact, backend) pair in the same interleaved rounds."""
    pairs: dict[str, Predictor] = {f"fp32 / {b}": Predictor.load(parent, backend=b)
                                   for b in PARENT_BACKENDS}
    for method, info in made.items():
        if "record" in info:
            child = Predictor.load(work / method)
            pairs[f"{method} / {child.backend}"] = child
            if method == "prune":
                pairs["prune / onnxruntime"] = Predictor.load(work / method, "onnxruntime")
    rows = validation_data(pairs["fp32 / eager"])
    batches = (1, 8, 64)
    warmup = {}
    for name, pred in list(pairs.items()):
        try:
            warmup[name] = round(warm(pred, rows, batches), 1)
        except Exception as e:  # a backend this model cannot run: report it, time the rest
            warmup[name] = f"error: {type(e).__name__}: {str(e)[:200]}"
            del pairs[name]
    calls = time_calls(pairs, rows, batches, args.rounds, args.seconds, seed=0)
    return {"warmup_s": warmup,
            "latency": {n: {b: summary(t, b) for b, t in per.items()} for n, per in
                        calls.items()}}


def table(res: dict[str, Any]) -> str:
    metric, lat = res["metric"], res["timing"]["latency"]
    base = lat["fp32 / eager"]
    lines = [f"| artifact / backend | size (weights / folder) | {metric} (val) | b1 median ms "
             "(p99) | b64 median ms (p99) | b64 rows/s | × eager b1 | × eager b64 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, per in lat.items():
        method = name.split(" / ")[0]
        info = res["children"].get(method, {})
        rec = info.get("record")
        size = (f"{rec['weights_bytes']['child'] / 1e6:.2f} MB / {info['dir_bytes'] / 1e6:.2f}"
                f" MB" if rec else f"{res['parent_weights'] / 1e6:.2f} MB / "
                f"{res['parent_dir'] / 1e6:.2f} MB")
        if rec:
            m = f"{rec['metric']['parent']:.2f} → {rec['metric']['child']:.2f}"
        else:
            m = f"{res['backend_scores'].get(name.split(' / ')[1], float('nan')):.2f}"
        lines.append(
            f"| {name} | {size} | {m} | {per[1]['median_ms']:.3f} ({per[1]['p99_ms']:.3f}) | "
            f"{per[64]['median_ms']:.2f} ({per[64]['p99_ms']:.2f}) | {per[64]['rows_per_s']:.0f}"
            f" | {base[1]['median_ms'] / per[1]['median_ms']:.2f} | "
            f"{base[64]['median_ms'] / per[64]['median_ms']:.2f} |")
    return "\n".join(lines)


def autotune_check(res: dict[str, Any]) -> dict[str, Any]:
    """The autotune pick against the best parent backend in the independent timing run."""
    lat = res["timing"]["latency"]
    out = {}
    for b in (1, 64):
        pick = res["autotune"]["by_batch"][b]
        timed = {n.split(" / ")[1]: v[b]["median_ms"] for n, v in lat.items()
                 if n.startswith("fp32 / ")}
        faithful = {n: t for n, t in timed.items()
                    if res["autotune"]["backends"].get(n, {}).get("eligible")}
        best = min(faithful, key=lambda n: faithful[n])
        out[b] = {"pick": pick, "best": best, "pick_ms": timed.get(pick),
                  "best_ms": faithful[best],
                  "within": round(timed[pick] / faithful[best] - 1, 4) if pick in timed
                  else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--methods", default="int8-static,int8,bf16,prune,distill")
    ap.add_argument("--metric", default=None)
    ap.add_argument("--amount", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--distill-epochs", type=int, default=6)
    ap.add_argument("--width", type=float, default=0.45)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--skip-refusal", action="store_true")
    ap.add_argument("--no-timing", action="store_true", help="compress and score only")
    ap.add_argument("--reuse", action="store_true", help="keep children already in --work")
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work
    parent = work / "parent"
    if not (args.reuse and parent.exists()):
        shutil.rmtree(parent, ignore_errors=True)
        shutil.copytree(args.model, parent)
    methods = [m for m in args.methods.split(",") if m]
    res: dict[str, Any] = {"machine": cpu_model(), "kind": cpu_kind(),
                           "threads": torch.get_num_threads(),
                           "parent_weights": (parent / art.WEIGHTS).stat().st_size,
                           "parent_dir": folder_bytes(parent)}
    res["export"] = export(parent)
    res["children"] = children(parent, work, methods, args)
    if "distill" in methods:
        res["student_alone"] = student_alone(parent, args.width, args.distill_epochs,
                                             main_metric(Predictor.load(parent), args.metric))
    if not args.skip_refusal:
        res["refusal"] = refusal(parent, work, args.metric)
    if args.no_timing:
        write_text(work / "result.json", dumps_json(res, indent=2))
        print(dumps_json({k: res.get(k) for k in ("children", "student_alone")}, indent=2))
        return
    res["autotune"] = bench(parent, autotune=True, for_batch=64, rounds=args.rounds,
                            seconds=args.seconds / 2, max_drop=0.5)
    res["metric"] = res["autotune"]["metric"]
    res["backend_scores"] = {n: r.get(res["metric"], float("nan")) for n, r in
                             res["autotune"]["backends"].items()}
    res["timing"] = timing(parent, work, res["children"], args)
    res["autotune_check"] = autotune_check(res)
    write_text(work / "result.json", dumps_json(res, indent=2))
    print(f"machine: {res['kind']} ({res['machine']}), {res['threads']} threads")
    print(table(res))
    print(dumps_json({k: res.get(k) for k in ("autotune_check", "refusal", "student_alone")},
                     indent=2))


if __name__ == "__main__":
    main()
