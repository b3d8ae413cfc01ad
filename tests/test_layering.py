"""Imports flow one way (DESIGN.md §2): a stage never imports a stage above it, and inside a
stage a module never imports one of its own tier or above (``MODULE_TIERS``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "layerwise"
# top to bottom; a module may import only from its own stage or stages below it
ORDER = ["cli", "experiments", "api", "serving", "monitoring", "compress", "explain",
         "recommend", "evaluation", "inference", "rl", "pretrain", "runs", "artifact", "training",
         "models", "data", "tracking", "config", "files", "errors"]
LEAVES = {"errors": set(), "config": {"errors"}, "files": {"errors"}}


def stage(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def is_module(dotted: str) -> bool:
    """Whether ``layerwise.a.b`` names one of our modules or packages."""
    path = SRC.joinpath(*dotted.split(".")[1:])
    return dotted.startswith("layerwise.") and (path.with_suffix(".py").exists()
                                                or (path / "__init__.py").exists())


def imported_names(path: Path) -> set[str]:
    """The modules the imports in ``path`` reach (``from a import b`` gives ``a``, and
    ``a.b`` when b is a module), lazy imports in functions included, ``if TYPE_CHECKING:``
    blocks left out (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test).endswith("TYPE_CHECKING")
                   for stmt in node.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names
                                      if is_module(f"{node.module}.{a.name}")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def imported_stages(path: Path) -> set[str]:
    return {n.split(".")[1] for n in imported_names(path) if n.startswith("layerwise.")}


FILES = sorted(p for p in SRC.rglob("*.py") if stage(p) not in ("__init__", "__main__"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_imports_flow_down(path: Path) -> None:
    me = stage(path)
    assert me in ORDER, f"{me} is not placed in the layer order"
    for other in imported_stages(path) - {me}:
        assert other in ORDER, f"{path.name} imports unknown stage {other}"
        if me in LEAVES:
            assert other in LEAVES[me], f"leaf {me} imports {other}"
        elif other != "tracking":
            assert ORDER.index(other) > ORDER.index(me), f"{me} imports {other}, a stage above"


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 600}
    assert not big, f"split these by responsibility: {big}"


# ------------------------------------------------------------------------ inside a stage
# Each stage's modules in tiers, top to bottom: a module may import modules of the tiers
# below its own, never one of its own tier or above (the stage's __init__ may import any).
# models/registry.py names the family modules as strings and imports one only when it is
# looked up (see its docstring), so it stays at the bottom.
MODULE_TIERS = {
    "cli": ["chat explain handoff init report sample serve",
            "calibrate compress cv evaluate generate info predict pretrain recommend rollout "
            "train",
            "registry tune ui",
            "runs"],
    "config": ["parsing", "recommend rl", "supervised",
               "audio columns generative pretrain pretrained regularise seq2seq sequences "
               "streaming",
               "base"],
    "data": ["streaming",
             "build proposal",
             "catalogue chunks features profile",
             "chat_sets dates encoder_artifact sequence_sets sources spoken tags seq2seq "
             "series rows",
             "audio dataset shards text transcript",
             "augment batching encoder",
             "bio columns folds table"],
    "experiments": ["choose cv tune"],
    "explain": ["report", "doctor importance robustness", "attributions", "render"],
    "evaluation": ["detailed", "calibrate handoff operational", "generative", "judge",
                   "metrics plots splits",
                   "bootstrap calibration conformal figures sequences speech"],
    "inference": ["chat", "predictor", "lm_steps",
                  "abstain backends calibrated generative seq2seq sequences", "onnx"],
    "compress": ["bench make", "bench_lm distill export prune quantize", "guard"],
    "models": ["model",
               "seq2seq vae",
               "autoencoder bag cnn diffusion gan mlp pretrained rnn transformer",
               "audio ctc",
               "generative heads hub layers lora registry sequence_heads"],
    "monitoring": ["monitor retrain compare", "reference rolling labels", "drift"],
    "pretrain": ["runner", "objectives warm_start"],
    "recommend": ["runner", "recommender", "ranking", "families", "sequential", "models",
                  "data metrics"],
    "rl": ["runner", "dqn policy ppo report", "episodes networks replay", "env",
           "bandit envs"],
    "serving": ["server", "app", "predict", "state", "model",
                "abstain batcher limits metrics records settings validate"],
    "tracking": ["webapp", "dashboard", "cards", "card recorder registry studies views",
                 "store", "schema"],
    "training": ["trainer", "adversarial mixup", "probe steps",
                 "callbacks checkpoint hardware phases trees",
                 "averaging distributed guard optim"],
}
TIER = {(st, m): i for st, tiers in MODULE_TIERS.items()
        for i, tier in enumerate(tiers) for m in tier.split()}
STAGE_MODULES = sorted(p for p in SRC.glob("*/*.py") if p.name != "__init__.py")


def test_every_module_is_placed_in_a_tier() -> None:
    present = {(p.parent.name, p.stem) for p in STAGE_MODULES}
    assert not present - set(TIER), f"place these in MODULE_TIERS: {present - set(TIER)}"
    assert not set(TIER) - present, f"MODULE_TIERS names missing modules: {set(TIER) - present}"


@pytest.mark.parametrize("path", STAGE_MODULES,
                         ids=[str(p.relative_to(SRC)) for p in STAGE_MODULES])
def test_imports_flow_down_inside_a_stage(path: Path) -> None:
    me = (path.parent.name, path.stem)
    prefix = f"layerwise.{me[0]}."
    mine = {n.removeprefix(prefix).split(".")[0] for n in imported_names(path)
            if n.startswith(prefix)}
    for other in sorted(mine - {me[1]}):
        assert TIER[me[0], other] > TIER[me], (
            f"{me[0]}/{me[1]}.py imports {other}, which is not in a tier below it")
