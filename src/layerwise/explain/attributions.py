"""Per-row attributions: how much each input feature moved one output of a loaded model.

    >>> import layerwise as lw                                   # doctest: +SKIP
    >>> m = lw.load("runs/wine/model")
    >>> ex = m.explain(rows, method="integrated_gradients")
    >>> ex.rows[0]["attributions"]          # {"alcohol": 0.12, "proline": -0.03, ...}

The explained quantity is the probability of the target class for a category output (the
predicted class unless ``target`` names one), the positive-class probability for a binary
output and the value for a numeric one. Methods come from Captum:

- ``integrated_gradients``: path integral of gradients from a baseline (Sundararajan et
  al. 2017); its attributions sum to f(x) - f(baseline) (*completeness*, reported per row).
- ``gradient_shap``: expected gradients over noisy baselines.
- ``kernel_shap``, ``lime``: a weighted linear model over feature subsets.
- ``occlusion``: the output change when a feature (an image patch, a token) is removed.

What a feature is depends on the input: numeric columns for tabular models, pixels
(gradient methods) or patches (perturbation methods) for images, tokens for text. A
removed feature takes its baseline: the training mean for a standardised column, a black
pixel, the ``<unk>`` token (gradient methods on text start from ``<pad>`` embeddings).
Attention maps of the transformer family are :func:`attention`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from layerwise.data.build import CATEGORY_KEY, NUMERIC_KEY, encode_rows
from layerwise.data.features import BinaryEncoder, CategoryEncoder, NumericEncoder
from layerwise.data.text import PAD_ID, UNK_ID
from layerwise.errors import ConfigError, DataError

METHODS = ("integrated_gradients", "gradient_shap", "kernel_shap", "lime", "occlusion")
GRADIENT = ("integrated_gradients", "gradient_shap")
PATCH = 4  # image side of one perturbation feature (a 28x28 image has 49)


@dataclass
class Explanation:
    """Attributions for a batch of rows, with what they explain."""

    method: str
    kind: str                     # tabular, image or text
    output: str                   # the explained output's name
    rows: list[dict[str, Any]]    # per row: prediction, target, attributions, ...
    features: list[str] = field(default_factory=list)   # tabular: the column names
    maps: list[np.ndarray] = field(default_factory=list)  # image [H, W] / text [T] / tab [F]
    images: list[np.ndarray] = field(default_factory=list)  # image: pixels [H, W, C] in 0-1

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "kind": self.kind, "output": self.output,
                "features": self.features, "rows": self.rows}


# ------------------------------------------------------------------------- the target
def output_of(schema: Any, name: str | None) -> Any:
    """The output encoder to explain (the only one, or the one named)."""
    outs = [e for e in schema.outputs
            if isinstance(e, CategoryEncoder | BinaryEncoder | NumericEncoder)]
    if name is not None:
        outs = [e for e in outs if e.name == name]
    if not outs:
        names = [e.name for e in schema.outputs]
        raise ConfigError(f"explanations cover category, binary and numeric outputs; "
                          f"{'no such output ' + repr(name) if name else 'this model has'} "
                          f"(outputs: {names})")
    if len(outs) > 1:
        raise ConfigError(f"the model has several outputs; name one with output= "
                          f"({[e.name for e in outs]})")
    return outs[0]


def scalar_fn(model: torch.nn.Module, enc: Any) -> Callable[[dict[str, Any], torch.Tensor],
                                                             torch.Tensor]:
    """``f(inputs, target) → [B]``: the explained quantity of each row."""
    def f(inputs: dict[str, Any], target: torch.Tensor) -> torch.Tensor:
        out = model(inputs)[enc.name]
        if isinstance(enc, CategoryEncoder):
            return out.float().softmax(-1).gather(1, target.view(-1, 1)).squeeze(1)
        flat = out.float().reshape(len(out), -1)[:, 0]
        return flat.sigmoid() if isinstance(enc, BinaryEncoder) else flat
    return f


def targets_for(model: torch.nn.Module, enc: Any, inputs: dict[str, Any],
                target: str | None) -> torch.Tensor:
    """The class explained per row: ``target`` when given, else the predicted class."""
    n = _rows(inputs)
    if not isinstance(enc, CategoryEncoder):
        return torch.zeros(n, dtype=torch.long)
    if target is not None:
        labels = [str(v) for v in enc.vocab]
        if str(target) not in labels:
            raise ConfigError(f"target {target!r} is not a class of {enc.name!r}; classes: "
                              f"{labels}")
        return torch.full((n,), labels.index(str(target)), dtype=torch.long)
    with torch.no_grad():
        return model(inputs)[enc.name].argmax(-1).long()


def _rows(inputs: dict[str, Any]) -> int:
    v = next(iter(inputs.values()))
    return len(v["ids"]) if isinstance(v, dict) else len(v)


# ------------------------------------------------------------------------- the kinds
def kind_of(schema: Any) -> str:
    """What the features are: one image input, one text input, or numeric columns."""
    if schema.series:
        raise ConfigError("explanations cover tabular, image and text models; this model "
                          "reads a time series")
    n_img, n_txt = len(schema.images), len(schema.texts)
    if n_img + n_txt > 1 or (n_img + n_txt == 1 and (schema.numeric or schema.category)):
        raise ConfigError("explanations cover a model with one image input, one text input, "
                          "or numeric columns only; this one mixes inputs")
    if n_img:
        return "image"
    if n_txt:
        return "text"
    if not schema.numeric:
        raise ConfigError("tabular explanations cover numeric columns; this model has only "
                          "category inputs")
    return "tabular"


def explain(predictor: Any, rows: Any, *, method: str = "integrated_gradients",
            output: str | None = None, target: str | None = None, steps: int = 128,
            samples: int = 200, seed: int = 0) -> Explanation:
    """Attributions for ``rows`` (anything ``predict`` accepts) by ``method``."""
    if method not in METHODS:
        raise ConfigError(f"explain method must be one of {', '.join(METHODS)} (or "
                          f"attention); got {method!r}")
    schema, model = predictor.schema, predictor.model.eval()
    kind, enc = kind_of(schema), output_of(schema, output)
    data, _ = encode_rows(schema, predictor.to_table(rows), targets=False)
    inputs = dict(data.inputs)
    tgt = targets_for(model, enc, inputs, target)
    f = scalar_fn(model, enc)
    torch.manual_seed(seed)
    run = {"tabular": _tabular, "image": _image, "text": _text}[kind]
    attr, extra = run(model, schema, f, inputs, tgt, method, steps, samples)
    ex = Explanation(method, kind, enc.name, [], maps=attr)
    if kind == "tabular":
        ex.features = [e.name for e in schema.numeric]
    if kind == "image":
        ex.images = extra["pixels"]
    ex.rows = _describe_rows(ex, enc, f, inputs, tgt, extra)
    return ex


def _describe_rows(ex: Explanation, enc: Any, f: Callable[..., torch.Tensor],
                   inputs: dict[str, Any], tgt: torch.Tensor, extra: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    with torch.no_grad():
        value = f(inputs, tgt)
    out = []
    for i, a in enumerate(ex.maps):
        row: dict[str, Any] = {"value": float(value[i])}
        if isinstance(enc, CategoryEncoder):
            row["target"] = str(enc.vocab[int(tgt[i])])
        if ex.kind == "tabular":
            row["attributions"] = {n: float(v) for n, v in zip(ex.features, a)}
        elif ex.kind == "text":
            row["tokens"] = extra["tokens"][i]
            row["attributions"] = [float(v) for v in a]
        else:
            row["attributions"] = np.round(a, 6).tolist()
        if "delta" in extra:  # integrated gradients: completeness
            s, d = float(np.sum(extra["full"][i])), float(extra["delta"][i])
            row["completeness"] = {"sum": s, "f_x_minus_f_baseline": d,
                                   "relative_error": abs(s - d) / max(abs(d), 1e-12)}
        out.append(row)
    return out


# ------------------------------------------------------------------------- captum calls
def _captum() -> Any:
    try:
        import captum.attr as ca
    except ImportError as e:  # pragma: no cover - the eval extra is installed in CI
        raise ConfigError("explanations need the captum package: pip install "
                          "'layerwise[eval]'") from e
    return ca


def _attribute(method: str, forward: Callable[..., torch.Tensor], x: torch.Tensor,
               baseline: torch.Tensor, *, steps: int, samples: int,
               feature_mask: torch.Tensor | None = None,
               window: tuple[int, ...] | None = None, args: Any = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One Captum method over ``x``; returns the attributions and, for integrated
    gradients, f(x) - f(baseline) per row (its completeness reference)."""
    ca = _captum()
    if method == "integrated_gradients":
        a, delta = ca.IntegratedGradients(forward).attribute(
            x, baselines=baseline, n_steps=steps, method="gausslegendre",
            additional_forward_args=args, return_convergence_delta=True,
            internal_batch_size=max(1, len(x)) * min(steps, 64))
        return a, a.reshape(len(a), -1).sum(1) - delta
    if method == "gradient_shap":
        noise = torch.cat([baseline, x.detach()])  # the baseline distribution: base and data
        return ca.GradientShap(forward).attribute(
            x, baselines=noise, n_samples=max(1, samples // 10), stdevs=0.09,
            additional_forward_args=args), None
    if method == "occlusion":
        return ca.Occlusion(forward).attribute(
            x, sliding_window_shapes=window or (1,), baselines=baseline,
            additional_forward_args=args), None
    if method == "kernel_shap":
        explainer = ca.KernelShap(forward)
    else:  # an unpenalised surrogate: the default lasso zeroes the small effects
        from captum._utils.models.linear_model import SkLearnLinearRegression

        explainer = ca.Lime(forward, interpretable_model=SkLearnLinearRegression())
    rows = [explainer.attribute(x[i:i + 1], baselines=baseline[i:i + 1],
                                   feature_mask=None if feature_mask is None
                                   else feature_mask[i:i + 1], n_samples=samples,
                                   additional_forward_args=_row_args(args, i))
            for i in range(len(x))]
    return torch.cat(rows), None


def _row_args(args: Any, i: int) -> Any:
    if args is None:
        return None
    return tuple(a[i:i + 1] if isinstance(a, torch.Tensor) else a for a in args)


def _tabular(model: Any, schema: Any, f: Callable[..., torch.Tensor],
             inputs: dict[str, Any], tgt: torch.Tensor, method: str, steps: int,
             samples: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    x = inputs[NUMERIC_KEY].float()
    rest = {k: v for k, v in inputs.items() if k != NUMERIC_KEY}
    cats = rest.get(CATEGORY_KEY)

    def forward(num: torch.Tensor, target: torch.Tensor, cat: Any = None) -> torch.Tensor:
        feed = {NUMERIC_KEY: num} | ({CATEGORY_KEY: cat} if cat is not None else {})
        return f(feed, target)

    baseline = torch.zeros_like(x)  # standardised columns: 0 is the training mean
    args = (tgt,) if cats is None else (tgt, cats)
    a, full = _attribute(method, forward, x, baseline, steps=steps, samples=samples,
                         args=args)
    extra = _completeness(method, a, full, forward, x, baseline, args)
    return [r.detach().numpy() for r in a], extra


def _image(model: Any, schema: Any, f: Callable[..., torch.Tensor],
           inputs: dict[str, Any], tgt: torch.Tensor, method: str, steps: int,
           samples: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    enc = schema.images[0]
    x = inputs[enc.name].float()
    mean = torch.tensor(enc.mean).view(1, -1, 1, 1)
    std = torch.tensor(enc.std).view(1, -1, 1, 1)
    baseline = ((0.0 - mean) / std).expand_as(x).contiguous()  # a black image

    def forward(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return f({enc.name: img}, target)

    c, h, w = x.shape[1:]
    patch = max(1, min(PATCH, h // 2, w // 2))
    grid = (torch.arange(h)[:, None] // patch) * ((w + patch - 1) // patch) \
        + torch.arange(w)[None, :] // patch                     # [H, W] patch ids
    mask = grid.expand(len(x), c, h, w).contiguous()
    a, full = _attribute(method, forward, x, baseline, steps=steps, samples=samples,
                         feature_mask=mask, window=(c, patch, patch), args=(tgt,))
    extra = _completeness(method, a, full, forward, x, baseline, (tgt,))
    extra["pixels"] = [p.permute(1, 2, 0).clamp(0, 1).numpy()
                       for p in (x * std + mean)]
    return [r.detach().sum(0).numpy() for r in a], extra   # [H, W]: channels summed


def _text(model: Any, schema: Any, f: Callable[..., torch.Tensor],
          inputs: dict[str, Any], tgt: torch.Tensor, method: str, steps: int,
          samples: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    enc = schema.texts[0]
    ids, lengths = inputs[enc.name]["ids"], inputs[enc.name]["lengths"]
    if method in GRADIENT:
        a, extra = _text_gradients(model, enc, f, ids, lengths, tgt, method, steps, samples)
    else:
        def forward(keep: torch.Tensor, target: torch.Tensor, ids_: torch.Tensor,
                    lengths_: torch.Tensor) -> torch.Tensor:
            moved = torch.where(keep > 0.5, ids_, torch.full_like(ids_, UNK_ID))
            return f({enc.name: {"ids": moved, "lengths": lengths_}}, target)

        keep = torch.ones(ids.shape, dtype=torch.float32)
        mask = torch.arange(ids.shape[1]).expand(ids.shape).contiguous()
        a, _ = _attribute(method, forward, keep, torch.zeros_like(keep), steps=steps,
                          samples=samples, feature_mask=mask, window=(1,),
                          args=(tgt, ids, lengths))
        extra = {}
    extra["tokens"] = [_tokens(enc, ids[i, :int(lengths[i])].tolist())
                       for i in range(len(ids))]
    return [a[i, :int(lengths[i])].detach().numpy() for i in range(len(ids))], extra


def _text_gradients(model: Any, enc: Any, f: Callable[..., torch.Tensor], ids: torch.Tensor,
                    lengths: torch.Tensor, tgt: torch.Tensor, method: str, steps: int,
                    samples: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Gradient methods on text attribute the token embeddings (ids are not continuous)
    and sum each token's share over the embedding width."""
    ca = _captum()
    layer = _embedding(model, enc.name)

    def forward(ids_: torch.Tensor, target: torch.Tensor, lengths_: torch.Tensor
                ) -> torch.Tensor:
        return f({enc.name: {"ids": ids_, "lengths": lengths_}}, target)

    base = torch.full_like(ids, PAD_ID)
    if method == "integrated_gradients":
        a, delta = ca.LayerIntegratedGradients(forward, layer).attribute(
            ids, baselines=base, n_steps=steps, method="gausslegendre",
            additional_forward_args=(tgt, lengths), return_convergence_delta=True)
        tok = a.sum(-1)
        return tok, {"full": [r.numpy() for r in tok.detach()],
                     "delta": (tok.sum(1) - delta).detach().numpy()}
    # gradient SHAP samples points between input and baseline *embeddings*: the embedding
    # layer is swapped for a pass-through for the call, and put back after it
    import warnings

    path = next(n for n, m in model.named_modules() if m is layer)
    with warnings.catch_warnings():  # it asks to restore the layer: the finally does
        warnings.simplefilter("ignore", UserWarning)
        swapped = ca.configure_interpretable_embedding_layer(model, path)
    try:
        x, b = swapped.indices_to_embeddings(ids), swapped.indices_to_embeddings(base)
        a = ca.GradientShap(forward).attribute(
            x, baselines=torch.cat([b, x.detach()]), n_samples=max(1, samples // 10),
            stdevs=0.0, additional_forward_args=(tgt, lengths))
    finally:
        ca.remove_interpretable_embedding_layer(model, swapped)
    return a.sum(-1), {}


def _embedding(model: Any, name: str) -> torch.nn.Module:
    """The token embedding of a text input's encoder (rnn and transformer families)."""
    encoders = getattr(getattr(model, "backbone", None), "encoders", None)
    enc = encoders[name] if encoders is not None and name in encoders else None
    for m in (enc.modules() if enc is not None else ()):
        if isinstance(m, torch.nn.Embedding):
            return m
    raise ConfigError(f"gradient explanations of text need the token embedding of input "
                      f"{name!r}; this model has none (try method occlusion)")


def _tokens(enc: Any, ids: list[int]) -> list[str]:
    vocab = getattr(enc, "vocab", None)
    if vocab:
        return [str(vocab[i]) if 0 <= i < len(vocab) else "<unk>" for i in ids]
    return [enc.decode([i]) for i in ids]


def _completeness(method: str, a: torch.Tensor, full: torch.Tensor | None,
                  forward: Callable[..., torch.Tensor], x: torch.Tensor,
                  baseline: torch.Tensor, args: tuple[Any, ...]) -> dict[str, Any]:
    """Integrated gradients: each row's attribution sum beside f(x) - f(baseline)."""
    if method != "integrated_gradients":
        return {}
    with torch.no_grad():
        delta = forward(x, *args) - forward(baseline, *args)
    return {"full": [r.detach().numpy() for r in a], "delta": delta.numpy()}


# ------------------------------------------------------------------------- attention
def attention(predictor: Any, rows: Any) -> Explanation:
    """Attention maps of a transformer over text: per row, per block, the head-averaged
    ``[T, T]`` weights (row: the attending token), and the attention each token receives
    in the last block as its score."""
    model, schema = predictor.model.eval(), predictor.schema
    backbone: Any = getattr(model, "backbone", None)
    if not hasattr(backbone, "attention_maps") or not schema.texts:
        family = predictor.config.model.family
        raise ConfigError(f"attention maps need a transformer over text; this model is "
                          f"family {family} (use another method, e.g. integrated_gradients)")
    enc = schema.texts[0]
    data, _ = encode_rows(schema, predictor.to_table(rows), targets=False)
    maps = backbone.attention_maps(dict(data.inputs))[enc.name]   # blocks × [B, H, T, T]
    ids, lengths = data.inputs[enc.name]["ids"], data.inputs[enc.name]["lengths"]
    cls = int(maps[0].shape[-1] > int(lengths.max()))            # a leading cls token
    ex = Explanation("attention", "text", "", [])
    for i in range(len(ids)):
        n = int(lengths[i])
        per_block = [m[i].float().mean(0)[cls:cls + n, cls:cls + n].numpy() for m in maps]
        if not per_block:
            raise DataError("the model has no attention blocks")
        ex.maps.append(per_block[-1].mean(0))
        ex.rows.append({"tokens": _tokens(enc, ids[i, :n].tolist()),
                        "attention": [np.round(b, 5).tolist() for b in per_block],
                        "attributions": [float(v) for v in per_block[-1].mean(0)]})
    return ex


def randomised_copy(loaded: Any, seed: int = 123) -> Any:
    """A copy of a loaded model whose weights are re-initialised (the model-randomisation
    sanity check of Adebayo et al. 2018: maps that survive it do not explain the model)."""
    import copy

    clone = copy.copy(loaded)
    clone.model = copy.deepcopy(loaded.model)
    torch.manual_seed(seed)
    for m in clone.model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    clone.model.eval()
    return clone
