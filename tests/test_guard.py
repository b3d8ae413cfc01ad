"""The one numerics guard shared by the Trainer, phased models, DQN and PPO."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from layerwise.errors import NonFiniteError
from layerwise.training.guard import Guard

SRC = Path(__file__).parent.parent / "src" / "layerwise"


def _params(*grads: list[float]) -> list[torch.nn.Parameter]:
    out = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        out.append(p)
    return out


def test_measure_gives_the_global_norm_and_clips() -> None:
    params = _params([3.0, 0.0], [0.0, 4.0])
    v = Guard.measure(params, torch.tensor(2.0), clip=1.0, micro=2)
    assert v.finite and v.norm == pytest.approx(5.0) and v.loss == pytest.approx(1.0)
    assert v.norms.tolist() == pytest.approx([3.0, 4.0]) and v.tensors == 2
    total = torch.linalg.vector_norm(torch.cat([p.grad for p in params]))  # type: ignore[misc]
    assert float(total) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), float("nan")])
def test_the_sum_check_finds_every_kind_of_non_finite_value(bad: float) -> None:
    v = Guard.measure(_params([1.0, 2.0], [3.0, bad, -1.0]), torch.tensor(0.5))
    assert not v.finite and v.norm is None and v.norms is None and v.tensors == 2


def test_a_sum_that_overflows_is_not_mistaken_for_a_non_finite_gradient() -> None:
    # each value is finite, their sum is not: the exact isfinite check decides
    big = float(torch.finfo(torch.float32).max)
    params = _params([big, big], [-big, -big])
    assert not math.isfinite(float(params[0].grad.sum()))  # type: ignore[union-attr]
    v = Guard.measure(params, torch.tensor(1.0))
    assert v.finite and v.loss == 1.0
    # their L2 norm overflows too: the verdict is the same on a step that measures norms,
    # and only clipping, which needs a finite norm, skips it
    assert Guard.measure(params, torch.tensor(1.0), norms=True).finite
    assert not Guard.measure(params, torch.tensor(1.0), clip=1.0).finite


def test_norms_are_measured_only_when_asked() -> None:
    params = _params([3.0, 0.0], [0.0, 4.0])
    v = Guard.measure(params, torch.tensor(1.0))
    assert v.finite and v.norm is None and v.norms is None
    w = Guard.measure(params, torch.tensor(1.0), norms=True)
    assert w.norm == pytest.approx(5.0) and w.norms.tolist() == [3.0, 4.0]  # type: ignore[union-attr]


def test_non_finite_steps_are_counted_and_abort_in_a_row() -> None:
    g, counts = Guard(3, "lower the learning rate"), SimpleNamespace(skipped=0, bad_in_row=0)
    bad = _params([float("nan"), 1.0])
    assert not Guard.measure(bad, torch.tensor(1.0)).finite
    assert not Guard.measure(_params([1.0]), torch.tensor(float("inf"))).finite
    g.skip(counts, 1.0)
    g.skip(counts, 1.0, counts=False)          # recorded, not counted (fp16 overflow)
    assert (counts.skipped, counts.bad_in_row) == (2, 1)
    g.ok(counts)
    g.skip(counts, 1.0)
    g.skip(counts, 1.0)
    with pytest.raises(NonFiniteError, match="3 optimizer steps in a row.*lower the learning"):
        g.skip(counts, float("nan"))


def test_measure_clipped_matches_torch_clip_grad_norm_exactly() -> None:
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.zeros(5, 7)) for _ in range(3)]
    b = [torch.nn.Parameter(torch.zeros(5, 7)) for _ in range(3)]
    for p, q in zip(a, b):
        p.grad = torch.randn(5, 7)
        q.grad = p.grad.clone()
    torch.nn.utils.clip_grad_norm_(a, 0.5)
    v = Guard.measure_clipped(b, torch.tensor(0.3), 0.5)
    assert v.finite
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a, b))  # type: ignore[arg-type]


def test_every_training_loop_uses_the_one_guard() -> None:
    users = {"training/trainer.py", "training/phases.py", "rl/dqn.py", "rl/ppo.py"}
    for rel in users:
        assert "from layerwise.training.guard import Guard" in (SRC / rel).read_text(), rel
    # nobody else raises the non-finite error or keeps its own copy of the check
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        rel = str(path.relative_to(SRC))
        if rel not in ("training/guard.py", "errors.py"):
            assert "raise NonFiniteError" not in text, rel
            assert "clip_grad_norm_(" not in text, rel
