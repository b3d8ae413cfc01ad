"""The declarative rung: ``train(config)``, ``load(model_dir)``, ``evaluate(model_dir)``.

    >>> import layerwise as lw                                   # doctest: +SKIP
    >>> run = lw.train("examples/digits_cnn.yaml", output="runs/digits")
    >>> m = lw.load(run.model_dir)
    >>> m.predict(run_rows)
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from layerwise import artifact as art
from layerwise.config import GENERATIVE_FAMILIES, Config, RecommendConfig, RLConfig, parse
from layerwise.data.augment import Augmenter
from layerwise.data.batching import TensorData
from layerwise.data.build import Dataset, encode_rows, resolve_columns
from layerwise.data.features import CategoryEncoder, NumericEncoder
from layerwise.data.streaming import build_for_training, held_out_sample
from layerwise.errors import ConfigError
from layerwise.evaluation import generative as gen_eval
from layerwise.evaluation import splits
from layerwise.evaluation.metrics import evaluate_outputs, headline
from layerwise.evaluation.plots import learning_curves
from layerwise.inference import seq2seq
from layerwise.inference.predictor import Predictor
from layerwise.models import LayerwiseModel, build_model
from layerwise.runs import (
    Run,
    RunDir,
    TrackEpochs,
    check_run,
    lineage,
    recording_failure,
    start_run,
    training_summary,
    write_history,
    write_metrics,
)
from layerwise.tracking.card import model_card
from layerwise.training import Callback, FitResult, Trainer, distributed
from layerwise.training.adversarial import boxes_for

if TYPE_CHECKING:
    from layerwise.rl.policy import Policy

TRAIN_EVAL_ROWS = 10_000  # rows of the training split scored at the end of a run


def _class_weights(cfg: Config, ds: Dataset) -> dict[str, torch.Tensor]:
    out = {}
    for o, enc in zip(cfg.outputs, ds.schema.outputs):
        cw = getattr(o, "class_weights", None)
        if cw is None or not isinstance(enc, CategoryEncoder):
            continue
        if cw == "balanced":
            out[o.name] = enc.class_weights(ds.train.targets[o.name])
        else:
            unknown = sorted(set(cw) - {str(v) for v in enc.vocab})
            if unknown:
                raise ConfigError(f"outputs.{o.name}.class_weights names unknown classes "
                                  f"{unknown}; classes: {[str(v) for v in enc.vocab]}")
            out[o.name] = torch.tensor([float(cw.get(str(v), 1.0)) for v in enc.vocab])
    return out


def build_for(cfg: Config, ds: Dataset) -> LayerwiseModel:
    """Build the model for a config and its fitted data, seeded for reproducibility."""
    torch.manual_seed(cfg.seed)
    scales = {e.name: e.scale for e in ds.schema.outputs  # type: ignore[attr-defined]
              if isinstance(e, NumericEncoder) or e.kind == "forecast"}
    model = build_model(cfg.model, cfg.outputs, ds.schema.describe(),
                        _class_weights(cfg, ds), scales)
    fit_data = getattr(getattr(model, "backbone", None), "fit_data", None)
    if fit_data is not None and hasattr(ds.train, "inputs"):  # statistics of the training
        fit_data(ds.train.inputs)                             # inputs (the bag's idf)
    init_from = getattr(cfg.model, "init_from", None)
    if init_from:  # a pre-trained encoder's weights (layerwise pretrain)
        from layerwise.pretrain.warm_start import warm_start

        ds.info["init_from"] = warm_start(model, init_from, cfg.model.init_lr,
                                          cfg.model.init_frozen_epochs)
    return model


def family_defaults(cfg: Config) -> dict[str, str]:
    """Training defaults a model family sets when the config leaves them unset.

    Each family's config declares them (``train_defaults``, see config/base.py), e.g.
    recurrent networks get ``train.grad_clip: 1.0``: their gradients can explode through
    time. A field counts as unset when it was not given or was given as null. The value
    goes into the resolved config (``config.yaml``) and the returned reasons into
    ``metrics.json → defaults``.
    """
    done: dict[str, str] = {}
    for key, (value, reason) in type(cfg.model).train_defaults.items():
        if key in cfg.train.model_fields_set and getattr(cfg.train, key) is not None:
            continue
        setattr(cfg.train, key, value)
        done[f"train.{key}"] = f"{value}: {reason}"
    return done


def train(config: Config | dict[str, Any] | str | Path, *, output: str | Path | None = None,
          overrides: list[str] | None = None, resume: bool = False,
          callbacks: list[Callback] | None = None, progress: str | None = None,
          overwrite: bool = False) -> Run:
    """Train from a config: data → model → fit → evaluate → artifact and run outputs.

    A reinforcement-learning config (one with an ``env`` key) trains an agent instead:
    environments → agent → evaluation episodes → a policy artifact (see layerwise.rl).
    A folder that already holds a run is refused unless ``resume`` (continue it) or
    ``overwrite`` (replace it); nothing is written before the config and data pass their
    checks, and a run that fails afterwards records its error in ``error.json``.
    """
    cfg = parse(config, overrides)
    if isinstance(cfg, RecommendConfig):  # a recommendation run (layerwise.recommend)
        return _train_recommender(cfg, output, resume, callbacks, progress, overwrite)
    if isinstance(cfg, RLConfig):
        if distributed.current() is not None:
            raise ConfigError("reinforcement learning trains in one process; drop --nproc")
        return _train_agent(cfg, output, resume, callbacks, progress, overwrite)
    if progress:
        cfg.train.progress = progress  # type: ignore[assignment]
    world = distributed.current()  # under torchrun: rank 0 alone writes the run folder
    main = world is None or world.main
    if distributed.restarted():  # an elastic restart repeats the command: it continues
        resume, overwrite = True, False
    defaults = family_defaults(cfg)
    resolve_columns(cfg)  # globs → columns before the run's config is compared or written
    rd = check_run(cfg, output, resume=resume, overwrite=overwrite)
    t_data = time.perf_counter()
    ds = build_for_training(cfg)  # in memory when it fits data.memory_budget, else streamed
    generative = cfg.model.family in GENERATIVE_FAMILIES
    if generative:
        ds = gen_eval.prepare(cfg, ds)
    t_data = time.perf_counter() - t_data
    model = build_for(cfg, ds)
    if main:
        start_run(rd, cfg, resume=resume, overwrite=overwrite, data_hash=ds.data_hash)
    with recording_failure(rd) if main else nullcontext():
        images = {e.name: e.cfg.augment for e in ds.schema.images + ds.schema.audio}
        tracked = [TrackEpochs(rd)] if main else []
        trainer = Trainer(cfg.train, callbacks=[*(callbacks or []), *tracked],
                          checkpoint_dir=rd.checkpoints,
                          resume=resume and rd.has_checkpoint(),
                          augment=Augmenter(images, cfg.seed),
                          input_boxes=boxes_for(ds.schema) if cfg.train.adversarial else None)
        fit = trainer.fit(model, ds.train, ds.validation)
        run = Run(rd.path, cfg, history=fit.history, interrupted=fit.interrupted, fit=fit)
        if not main:
            return run
        write_history(rd.history, fit.history)
        if not fit.interrupted:
            run.metrics = _finish(rd, cfg, ds, model, fit, generative, defaults, t_data)
    return run


def _finish(rd: RunDir, cfg: Config, ds: Dataset, model: LayerwiseModel, fit: FitResult,
            generative: bool, defaults: dict[str, str], t_data: float) -> dict[str, Any]:
    """Score every split, save the artifact, metrics.json and curves; returns the metrics."""
    model.to("cpu").to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    scores = _score_splits(cfg, ds, model, generative)
    if generative:
        scores.update(gen_eval.report(model, cfg, ds, rd.path))
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {**scores, "training": training_summary(fit, t_data, n_params),
               "choices": fit.choices, "defaults": defaults, "data": ds.info}
    _save_model(rd, cfg, ds, model, fit, scores, n_params)
    write_metrics(rd.metrics, metrics)
    learning_curves(fit.history, rd.curves)
    return metrics


def _score_splits(cfg: Config, ds: Dataset, model: LayerwiseModel, generative: bool
                  ) -> dict[str, Any]:
    """Metrics of every split; the training split on a seeded sample of at most
    ``TRAIN_EVAL_ROWS`` rows (enough to see over- or underfitting, without a pass as long
    as training itself)."""
    scores: dict[str, Any] = {}
    for split, data in (("train", ds.train), ("validation", ds.validation), ("test", ds.test)):
        if data is not None and len(data):
            if split == "train" and len(data) > TRAIN_EVAL_ROWS:
                g = torch.Generator().manual_seed(cfg.seed)
                data = data.subset(torch.randperm(len(data), generator=g)[:TRAIN_EVAL_ROWS])
            scores[split] = gen_eval.split_metrics(model, data, cfg.seed) \
                if generative else evaluate_model(model, ds.schema, data)
    return scores


def _save_model(rd: RunDir, cfg: Config, ds: Dataset, model: LayerwiseModel, fit: FitResult,
                scores: dict[str, Any], n_params: int) -> None:
    """The artifact: weights, metadata with lineage, training reference and card."""
    made = lineage(cfg, data_hash=ds.data_hash)
    choices = {k: fit.choices[k] for k in ("precision", "memory_format", "batching")}
    meta = {"config": cfg.model_dump(mode="json"), "lineage": made, "choices": choices,
            "parameters": n_params}
    card = model_card(meta, scores, ds.info)
    art.save(rd.model, config=cfg, schema=ds.schema, model=model,
             metrics={k: headline(v) for k, v in scores.items() if isinstance(v, dict)},
             lineage=made, reference=_reference(ds, model, cfg.seed), card=card,
             extra={"parameters": n_params, "choices": choices})


def _reference(ds: Dataset, model: torch.nn.Module, seed: int) -> dict[str, Any]:
    """The data stage's reference plus what drift monitoring compares against: value
    samples, held-out embeddings and predicted-class frequencies (monitoring/reference.py)."""
    if not isinstance(model, LayerwiseModel):
        return ds.reference
    from layerwise.monitoring.reference import extend

    return extend(ds.reference, held_out_sample(ds, 4096, seed), model, seed)


@torch.inference_mode()
def evaluate_model(model: torch.nn.Module, schema: Any, data: TensorData,
                   batch_size: int = 2048) -> dict[str, Any]:
    """Metrics of ``model`` on encoded rows (streamed data: shard by shard)."""
    from layerwise.data.batching import cat

    model.eval()
    if not hasattr(data, "chunks"):
        return evaluate_outputs(schema, _outputs(model, schema, data, batch_size),
                                data.targets)
    outs, targets = [], []
    for part in data.chunks():  # one shard in memory at a time
        outs.append(_outputs(model, schema, part, batch_size))
        targets.append(part.targets)
    return evaluate_outputs(schema, cat(outs), cat(targets))


def _outputs(model: torch.nn.Module, schema: Any, data: TensorData, batch_size: int
             ) -> dict[str, torch.Tensor]:
    """The model's outputs on every row, in batches (per-row sums for language models)."""
    from layerwise.data.batching import inference_rows, take

    n = len(data)
    outs = []
    heads = getattr(model, "heads", {})
    batch_size = inference_rows(model, data.inputs, batch_size)
    for s in range(0, n, batch_size):
        idx = torch.arange(s, min(n, s + batch_size))
        out = model(take(data.inputs, idx))
        for name, head in heads.items():  # a language model's logits [B, T, V] are too big
            if hasattr(head, "row_stats") and getattr(head, "kind", "") != "ctc":  # per-row sums
                # (a ctc output's scores [B, T, 1 + alphabet] are small: kept to decode)
                out[name] = head.row_stats(out[name], take(data.targets[name], idx))
            if getattr(head, "kind", "") == "sequence":  # exact match by decoding for real
                out[name][:, 3] = seq2seq.exact_rows(model, schema, take(data.inputs, idx),
                                                     take(data.targets[name], idx))
        outs.append(out)
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def _train_agent(cfg: RLConfig, output: str | Path | None, resume: bool,
                 callbacks: list[Callback] | None, progress: str | None,
                 overwrite: bool = False) -> Run:
    from layerwise.rl import train_agent

    return train_agent(cfg, output=output, resume=resume, callbacks=callbacks,
                       progress=progress, overwrite=overwrite)


def _train_recommender(cfg: RecommendConfig, output: str | Path | None, resume: bool,
                       callbacks: list[Callback] | None, progress: str | None,
                       overwrite: bool = False) -> Run:
    from layerwise.recommend import train_recommender

    if distributed.current() is not None:
        raise ConfigError("a recommender trains in one process; drop --nproc")
    return train_recommender(cfg, output=output, resume=resume, callbacks=callbacks,
                             progress=progress, overwrite=overwrite)


class LoadedModel(Predictor):
    """What :func:`load` returns for a supervised model: a :class:`Predictor` that can
    also explain its predictions (layerwise.explain)."""

    def explain(self, rows: Any, method: str = "integrated_gradients",
                **options: Any) -> Any:
        """Attributions per row (``method``: integrated_gradients, gradient_shap,
        kernel_shap, lime, occlusion, or attention); ``output_dir=`` also writes
        explanation.json and PNGs. Returns a :class:`layerwise.explain.Explanation`."""
        from layerwise.explain import explain

        return explain(self, rows, method=method, **options)


def load(path: str | Path) -> Predictor | Policy:
    """Load a model directory for prediction: ``lw.load(dir).predict(rows)``.

    A policy (``"kind": "policy"`` in layerwise.json) loads as a
    :class:`layerwise.rl.Policy`: ``lw.load(dir).predict(observation)`` returns an action.
    """
    kind = art.read_header(path).get("kind")
    if kind == "policy":
        from layerwise.rl.policy import Policy

        return Policy.load(path)
    if kind == "recommender":  # lw.load(dir).recommend(user, k)
        from layerwise.recommend import Recommender

        return Recommender.load(path)  # type: ignore[return-value]
    return LoadedModel.load(path)


def evaluate(model_dir: str | Path, data: str | Path | None = None, *,
             episodes: int | None = None, seed: int | None = None, details: bool = False,
             folder: str | Path | None = None, samples: int = 1000,
             price_per_hour: float | None = None, measure: bool = True) -> dict[str, Any]:
    """Evaluate a saved model on a labelled file, or on its own test split when none is given.

    Without ``data`` the stored config rebuilds the splits; the data hash must match the one
    recorded at training time, so the test split is the same rows. A policy is evaluated by
    running ``episodes`` deterministic episodes (default: the run's ``eval_episodes``) from
    ``seed`` (default: the run's ``eval_seed``).

    ``details`` (classifiers and regressors): also bootstrap intervals (``samples``
    resamples), ROC/PR curves, calibration, conformal coverage, residuals and, with
    ``measure``, latency, throughput and cost (``price_per_hour``), with their figures in
    ``folder`` (default ``MODEL/../evaluation``; see layerwise.evaluation.detailed).
    """
    if art.read_header(model_dir).get("kind") == "recommender":
        from layerwise.recommend import Recommender

        if data is not None:
            raise ConfigError(f"{model_dir} is a recommender: it is evaluated on its own "
                              "held-out items (leave-last-out); drop the data argument")
        return Recommender.load(model_dir).evaluate()
    if art.read_header(model_dir).get("kind") == "policy":
        from layerwise.rl.policy import Policy

        if data is not None:
            raise ConfigError(f"{model_dir} is a policy: it is evaluated by running episodes "
                              "in its environment, not on a data file (use --episodes and "
                              "--seed)")
        return Policy.load(model_dir).evaluate(episodes, seed)
    if details:
        from layerwise.evaluation import detailed

        if detailed.supports(model_dir):
            return detailed.evaluate_run(model_dir, data, output=folder, samples=samples,
                                         price_per_hour=price_per_hour, measure=measure)
    pred = Predictor.load(model_dir)
    if data is None:  # the run's own test split (evaluation/splits.py)
        tensors = splits.encoded(pred, splits.rebuild(pred, model_dir), "test", model_dir)
    else:
        tensors, _ = encode_rows(pred.schema, pred.to_table(data), targets=True)
    return evaluate_model(pred.model, pred.schema, tensors)
