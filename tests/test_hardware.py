"""Machine kinds faked by their CPU flags (Zen 3, Zen 4, AMX) and CUDA present or absent;
the precision probe, its cache and the thread policy under load; kept choices on resume."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import TrainConfig, Trainer
from layerwise.config import OptimizerConfig
from layerwise.training import hardware, probe
from tests.model_helpers import Crash

ZEN3 = frozenset({"avx2", "fma"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16"})
SPR = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
KINDS = {"zen3": (ZEN3, "avx2", None), "zen4": (ZEN4, "avx512_bf16", "bf16"),
         "amx": (SPR, "amx", "bf16"), "unknown": (frozenset(), "unknown", None)}


def cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 2, "batch_size": 16, "progress": "quiet",
                            "checkpoint_every": 0, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


def data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.fixture
def fake_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Set the CPU flags and the probe's timing; each call of the timing is counted."""
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))
    calls: list[int] = []

    def set_kind(flags: frozenset[str], speedup: float = 1.0) -> list[int]:
        # the tests' networks are tiny: count them as big enough to be worth timing
        monkeypatch.setattr("layerwise.training.hardware.SMALL_MODEL_FLOPS", 0.0)
        monkeypatch.setattr("layerwise.training.hardware.idle_cores", lambda: None)
        calls.clear()
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)

        def timing(*args: Any, **kw: Any) -> dict[str, Any]:
            calls.append(1)
            return {"fp32_ms": 10.0, "bf16_ms": 10.0 / speedup, "speedup": speedup,
                    "pairs": 3}

        monkeypatch.setattr(probe, "time_precisions", timing)
        return calls

    return set_kind


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_cpu_kind_is_recognised(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    flags, name, low = KINDS[kind]
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.cpu_kind() == name
    assert hardware.low_precision_candidate(torch.device("cpu"))[0] == low
    c = hardware.choose(cfg(device="auto"), nn.Linear(2, 2), 10)
    assert c.device == "cpu" and c.precision == (low or "fp32")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_cuda_present_picks_the_gpu_and_its_precision(monkeypatch: pytest.MonkeyPatch,
                                                      bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ZEN3)
    c = hardware.choose(cfg(device="auto"), nn.Conv2d(1, 2, 3), 10)
    assert (c.device, c.precision, c.memory_format) == ("cuda", expected, "channels_last")
    assert c.reasons["device"] == "CUDA available"
    assert c.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]


def test_compile_is_chosen_for_long_cuda_runs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[nn.Module] = []
    monkeypatch.setattr(torch, "compile", lambda m: compiled.append(m) or m)
    c = hardware.choose(cfg(), nn.Linear(2, 2), 10)
    m = nn.Linear(2, 2)
    hardware.compiled(m, "auto", torch.device("cpu"), 10_000, c)
    hardware.compiled(m, "auto", torch.device("cuda"), 100, c)
    assert not compiled and c.reasons["compile"].startswith("off")
    hardware.compiled(m, "auto", torch.device("cuda"), 5_000, c)
    assert compiled == [m] and c.reasons["compile"].startswith("on: CUDA")
    hardware.compiled(m, "on", torch.device("cpu"), 1, c)
    assert len(compiled) == 2


def test_an_avx2_cpu_never_times_bf16(fake_cpu: Any) -> None:
    calls = fake_cpu(ZEN3, speedup=5.0)
    res = Trainer(cfg(), loss_fn=F.cross_entropy).fit(net(), data())
    assert res.choices["precision"] == "fp32" and not calls
    assert "emulated" in res.choices["reasons"]["precision"]


@pytest.mark.parametrize(("flags", "speedup", "expected"),
                         [(ZEN4, 1.6, "bf16"), (ZEN4, 1.05, "fp32"), (SPR, 3.0, "bf16"),
                          (SPR, 0.7, "fp32")])
def test_bf16_is_chosen_by_measurement(fake_cpu: Any, flags: frozenset[str], speedup: float,
                                       expected: str) -> None:
    calls = fake_cpu(flags, speedup)
    res = Trainer(cfg(), loss_fn=F.cross_entropy).fit(net(), data())
    assert res.choices["precision"] == expected and len(calls) == 1
    record = res.choices["probe"]["precision"]
    assert record["speedup"] == speedup and record["cached"] is False
    assert f"{speedup:.2f}x" in res.choices["reasons"]["precision"]
    # the second run of the same model on the same machine reads the cache
    again = Trainer(cfg(), loss_fn=F.cross_entropy).fit(net(), data())
    assert again.choices["precision"] == expected and len(calls) == 1
    assert again.choices["probe"]["precision"]["cached"] is True


def test_a_small_model_is_not_timed(fake_cpu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_cpu(SPR, speedup=3.0)
    monkeypatch.setattr("layerwise.training.hardware.SMALL_MODEL_FLOPS", 20e6)
    res = Trainer(cfg(), loss_fn=F.cross_entropy).fit(net(), data())
    assert res.choices["precision"] == "fp32" and not calls
    assert "small model" in res.choices["reasons"]["precision"]


def test_the_real_probe_times_both_precisions_within_its_budget() -> None:
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    x, y = torch.randn(64, 32), torch.randint(0, 4, (64,))
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    r = probe.time_precisions(model, lambda m: F.cross_entropy(m(x), y),
                              torch.device("cpu"), budget=0.2)
    assert r["fp32_ms"] > 0 and r["bf16_ms"] > 0 and 1 <= r["pairs"] <= 9
    assert math.isclose(r["speedup"], r["fp32_ms"] / r["bf16_ms"], rel_tol=0.01)
    # the model, its gradients and the global RNG are untouched
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())


def test_probe_cache_is_keyed_by_model_and_threads(tmp_path: Path) -> None:
    x = torch.zeros(8, 4)
    a = probe.signature(nn.Linear(4, 2), x, 1)
    assert a == probe.signature(nn.Linear(4, 2), x, 1)
    assert a != probe.signature(nn.Linear(4, 3), x, 1)
    assert a != probe.signature(nn.Linear(4, 2), x, 2)
    assert a != probe.signature(nn.Linear(4, 2), torch.zeros(16, 4), 1)


def test_thread_policy_counts_only_idle_cores() -> None:
    big = 1e9
    assert hardware.threads_for(1e6, 2, free=2.0)[0] == 1            # small model
    assert hardware.threads_for(big, 2, free=1.9)[0] == 2            # quiet machine
    n, why = hardware.threads_for(big, 2, free=0.1)                  # two busy neighbours
    assert n == 1 and "idle" in why
    assert hardware.threads_for(big, 8, free=3.4)[0] == 3
    assert hardware.threads_for(big, 2, free=None)[0] == 2           # counters unreadable


def test_idle_cores_reads_proc_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    # (idle, total) jiffies before and after the window: 30 of 40 idle on 2 CPUs
    readings = iter([(100, 1000), (130, 1040)])
    monkeypatch.setattr(hardware, "cpu_times", lambda: next(readings))
    assert hardware.idle_cores(window=0.0, cpus=2) == pytest.approx(1.5)
    monkeypatch.setattr(hardware, "cpu_times", lambda: None)
    assert hardware.idle_cores(window=0.0, cpus=2) is None


def _bigger() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 2))


def test_a_busy_machine_trains_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cores", lambda: 2)
    x = torch.randn(256, 64)
    y = (x[:, 0] > 0).long()
    for free, threads in ((0.2, 1), (2.0, 2)):
        monkeypatch.setattr("layerwise.training.hardware.idle_cores", lambda f=free: f)
        res = Trainer(cfg(epochs=1, batch_size=128, precision="fp32"),
                      loss_fn=F.cross_entropy).fit(_bigger(), (x, y))
        assert res.choices["threads"] == threads
        assert res.choices["probe"]["idle_cores"] == free


def test_resume_keeps_the_first_runs_choices(fake_cpu: Any, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    # the first run measured bf16 faster and trained on one thread (a busy machine); the
    # resumed one runs where the probe would say otherwise, and must not change either
    monkeypatch.setattr(hardware, "cores", lambda: 2)
    x = torch.randn(256, 64)
    y = (x[:, 0] > 0).long()
    c = cfg(epochs=2, batch_size=32, checkpoint_every=3)
    fake_cpu(SPR, speedup=2.0)
    monkeypatch.setattr("layerwise.training.hardware.idle_cores", lambda: 0.1)
    ref_model = _bigger()
    ref = Trainer(c, loss_fn=F.cross_entropy).fit(ref_model, (x, y))
    assert (ref.choices["precision"], ref.choices["threads"]) == ("bf16", 1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(c, loss_fn=F.cross_entropy, callbacks=[Crash(5)],
                checkpoint_dir=tmp_path).fit(_bigger(), (x, y))
    calls = fake_cpu(ZEN3, speedup=0.1)
    monkeypatch.setattr("layerwise.training.hardware.idle_cores", lambda: 2.0)
    model = _bigger()
    res = Trainer(c, loss_fn=F.cross_entropy, checkpoint_dir=tmp_path,
                  resume=True).fit(model, (x, y))
    assert (res.choices["precision"], res.choices["threads"]) == ("bf16", 1) and not calls
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_forced_bf16_lands_near_fp32_accuracy() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    order = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(0))
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)[order]
    y = torch.tensor(d.target)[order]
    acc = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        res = Trainer(cfg(epochs=15, batch_size=32, precision=precision,
                          optimizer=OptimizerConfig(name="adamw", lr=0.003)),
                      loss_fn=F.cross_entropy).fit(model, (x[:1400], y[:1400]))
        assert res.choices["precision"] == precision
        assert all(math.isfinite(h["train_loss"]) for h in res.history)
        with torch.no_grad():
            acc[precision] = float((model(x[1400:]).argmax(1) == y[1400:]).float().mean())
    assert acc["fp32"] > 0.9
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.03, acc


def test_fp16_trains_with_a_gradient_scaler() -> None:
    # the GPU path without bf16; CPU autocast runs fp16 too, so the scaler path is covered
    x, y = data(256)
    res = Trainer(cfg(epochs=3, precision="fp16"), loss_fn=F.cross_entropy).fit(net(), (x, y))
    assert res.choices["precision"] == "fp16"
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert all(math.isfinite(h["train_loss"]) for h in res.history)


def test_fp16_overflow_is_skipped_without_aborting(tmp_path: Path) -> None:
    # a loss scale of 2**40 overflows fp16 gradients: the scaler halves it step after
    # step; those skipped steps must not count towards max_nonfinite_steps
    x, y = data(512)
    trainer = Trainer(cfg(epochs=1, batch_size=8, precision="fp16", max_nonfinite_steps=3),
                      loss_fn=F.cross_entropy)
    original = hardware.grad_scaler

    def huge(choices: Any, device: torch.device) -> Any:
        s = original(choices, device)
        return torch.amp.GradScaler(device.type, init_scale=2.0**40) if s else s

    import layerwise.training.trainer as tr

    mp = pytest.MonkeyPatch()
    mp.setattr(tr, "grad_scaler", huge)
    try:
        res = trainer.fit(net(), (x, y))
    finally:
        mp.undo()
    assert res.state.skipped >= 3 and res.state.skipped < res.state.step
    assert math.isfinite(res.history[-1]["train_loss"])


def test_a_fresh_probe_record_survives_a_safe_checkpoint_load(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """The probe's record goes into the checkpoint; a first (uncached) probe once held
    torch's own version object there, and ``torch.load(weights_only=True)`` refused the
    checkpoint the run had just written, so ``--resume`` failed."""
    monkeypatch.setattr(probe, "time_precisions", lambda *a, **k: {
        "fp32_ms": 2.0, "bf16_ms": 1.0, "speedup": 2.0, "pairs": 1})
    model, x = nn.Linear(4, 2), torch.zeros(8, 4)
    _, _, record = probe.choose_precision(model, lambda m: m(x).sum(), x,
                                          torch.device("cpu"), 1, cache=tmp_path / "p.json")
    assert record["cached"] is False and type(record["torch"]) is str
    torch.save({"probe": record}, tmp_path / "ck.pt")
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["probe"] == record
