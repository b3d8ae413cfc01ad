"""Data-parallel training (torchrun, gloo): N processes train the weights one process
trains, a checkpoint resumes on another number of processes, rank 0 alone writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn

from layerwise.api import train
from layerwise.errors import ConfigError
from layerwise.files import load_safetensors
from layerwise.training import distributed
from layerwise.training.distributed import (
    RankBatchNorm,
    RankDropout,
    World,
    batch_window,
    convert,
)

WORKER = Path(__file__).parent / "distributed_worker.py"
ROOT = Path(__file__).parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), **extra}


def _worker(out: Path, epochs: int, nproc: int, **env: str) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              f"--nproc-per-node={nproc}"] if nproc > 1 else [sys.executable]
    done = subprocess.run([*launch, str(WORKER), str(out), "cnn", str(epochs)],
                          env=_env(**env), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _max_diff(a: Path, b: Path) -> float:
    x, y = load_safetensors(a), load_safetensors(b)
    assert x.keys() == y.keys()
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def test_rank_dropout_draws_the_mask_one_process_draws() -> None:
    x = torch.randn(10, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    alone = F.dropout(x, 0.3, True)
    parts = []
    for rank in range(3):
        torch.manual_seed(3)
        drop = RankDropout(0.3)
        with batch_window(World(rank, 3, 3), len(x)) as rows:
            parts.append(drop(x[rows]))
    assert torch.equal(torch.cat(parts), alone)


@pytest.fixture
def group_of_one() -> Any:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_rank_batch_norm_is_batch_norm_over_the_whole_batch(group_of_one: Any) -> None:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(4)
    ranked = RankBatchNorm(4)
    ranked.load_state_dict(plain.state_dict())
    x = torch.randn(8, 4, 3, 3, requires_grad=True)
    w = torch.randn(8, 4, 3, 3)
    (plain(x) * w).sum().backward()
    gx, gw = x.grad.clone(), plain.weight.grad.clone()
    x.grad = None
    with batch_window(World(0, 1, 1), len(x)):
        (ranked(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, gx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ranked.weight.grad, gw, rtol=1e-5, atol=1e-6)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ranked, key), getattr(plain, key))


def test_convert_keeps_parameters_and_keys_and_converts_back() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.2),
                          nn.Flatten(), nn.BatchNorm1d(8))
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    convert(model)
    assert isinstance(model[1], RankBatchNorm) and isinstance(model[2], RankDropout)
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    convert(model, to_rank=False)
    assert type(model[1]) is nn.BatchNorm2d and type(model[4]) is nn.BatchNorm1d
    assert type(model[2]) is nn.Dropout and [id(p) for p in model.parameters()] == params


def test_world_rows_cover_an_uneven_batch_and_weigh_the_loss() -> None:
    worlds = [World(r, 3, 3) for r in range(3)]
    rows = [w.rows(11) for w in worlds]
    assert [(r.start, r.stop) for r in rows] == [(0, 3), (3, 7), (7, 11)]
    # the ranks' weighted mean losses average to the batch's mean loss
    losses = torch.arange(11.0)
    parts = [losses[r].mean() * w.share(11) for r, w in zip(rows, worlds)]
    assert float(sum(parts) / 3) == pytest.approx(float(losses.mean()))


def test_two_processes_train_one_process_weights_and_resume_in_one(tmp_path: Path) -> None:
    """Batch norm, dropout and an uneven last batch, SGD, fp32: the weights of 2 ranks are
    those of 1 process (float-order differences only); a 2-rank checkpoint resumes in 1
    process and ends where 2 → 2 ends."""
    _worker(tmp_path / "one.st", 1, 1)
    ckpt2 = tmp_path / "ckpt2"
    _worker(tmp_path / "two.st", 1, 2, CKPT_DIR=str(ckpt2))
    assert _max_diff(tmp_path / "one.st", tmp_path / "two.st") < 1e-5
    shutil.copytree(ckpt2, tmp_path / "ckpt1")
    _worker(tmp_path / "two_two.st", 2, 2, CKPT_DIR=str(ckpt2), RESUME="1")
    _worker(tmp_path / "two_one.st", 2, 1, CKPT_DIR=str(tmp_path / "ckpt1"), RESUME="1")
    assert _max_diff(tmp_path / "two_two.st", tmp_path / "two_one.st") < 1e-5


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_one_process_computing_two_ranks_trains_their_weights_bit_for_bit(
        tmp_path: Path, opt: str) -> None:
    """train.replicas: 2 in one process: the layers with weights run once per rank's rows
    and batch norm adds the ranks' sums in gloo's order, so its weights are bit-equal to
    2 processes' (batch norm, dropout, an uneven last batch; Adam too, which amplifies
    any float-order difference)."""
    _worker(tmp_path / "one.st", 2, 1, REPLICAS="2", OPT=opt)
    _worker(tmp_path / "two.st", 2, 2, REPLICAS="2", OPT=opt)
    assert _max_diff(tmp_path / "one.st", tmp_path / "two.st") == 0.0


def test_a_two_rank_checkpoint_resumes_bit_for_bit_in_one_process_of_two_replicas(
        tmp_path: Path) -> None:
    ckpt2 = tmp_path / "ckpt2"
    _worker(tmp_path / "first.st", 1, 2, CKPT_DIR=str(ckpt2), REPLICAS="2")
    shutil.copytree(ckpt2, tmp_path / "ckpt1")
    _worker(tmp_path / "two_two.st", 2, 2, CKPT_DIR=str(ckpt2), RESUME="1", REPLICAS="2")
    _worker(tmp_path / "two_one.st", 2, 1, CKPT_DIR=str(tmp_path / "ckpt1"), RESUME="1",
            REPLICAS="2")
    assert _max_diff(tmp_path / "two_two.st", tmp_path / "two_one.st") == 0.0


def test_replicas_other_than_the_world_size_are_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from layerwise import TrainConfig, Trainer

    monkeypatch.setattr(distributed, "join", lambda device: World(0, 3, 3))
    trainer = Trainer(TrainConfig(epochs=1, replicas=2, progress="quiet"),
                      loss_fn=F.cross_entropy)
    with pytest.raises(ConfigError, match="train.replicas is 2 but the run has 3 processes"):
        trainer.fit(nn.Linear(4, 2), (torch.randn(8, 4), torch.randint(0, 2, (8,))))


def test_replicas_refuse_a_trainer_with_its_own_training_step() -> None:
    from layerwise import TrainConfig, Trainer

    class Custom(Trainer):
        def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
            return super().training_step(model, batch) * 2

    trainer = Custom(TrainConfig(epochs=1, replicas=2, progress="quiet"),
                     loss_fn=F.cross_entropy)
    with pytest.raises(ConfigError, match="overrides training_step"):
        trainer.fit(nn.Linear(4, 2), (torch.randn(8, 4), torch.randint(0, 2, (8,))))


class _Counting(nn.Linear):
    rows: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(len(x))
        return super().forward(x)


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.linear = _Counting(3, 3)
        self.linear.rows = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.scale)


def test_emulate_slices_layers_warns_of_others_and_undoes_itself() -> None:
    model = nn.Sequential(_Scaled(), nn.BatchNorm1d(3), nn.Dropout(0.1))
    keys = list(model.state_dict())
    x = torch.randn(6, 3)
    with pytest.warns(UserWarning, match=r"parameters of 0 sum their gradients"):
        hooks = distributed.emulate(model, 2)
    assert isinstance(model[1], RankBatchNorm) and isinstance(model[2], RankDropout)
    model.eval()
    with distributed.replica_window(2, 6):
        model[0](x)
    assert model[0].linear.rows == [3, 3]   # the linear layer ran once per rank's rows
    model[0](x).sum().backward()
    assert torch.equal(model[0].linear.bias.grad, torch.full((3,), 3.0))  # 6 rows / 2
    distributed.unemulate(model, hooks)
    model[0].linear.bias.grad = None
    model[0](x).sum().backward()
    assert torch.equal(model[0].linear.bias.grad, torch.full((3,), 6.0))
    assert "forward" not in model[0].linear.__dict__ and list(model.state_dict()) == keys
    assert type(model[1]) is nn.BatchNorm1d and type(model[2]) is nn.Dropout


def test_phased_models_and_agents_are_refused(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    model.phases = ("discriminator", "generator")  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="phased model"):
        distributed.check_model(model)
    monkeypatch.setenv("WORLD_SIZE", "2")
    rl = yaml.safe_load((ROOT / "examples" / "cartpole_ppo.yaml").read_text())
    with pytest.raises(ConfigError, match="one process"):
        train(rl, output=tmp_path / "rl")


def test_an_elastic_restart_continues_the_run_its_command_names(
        tiny_mlp: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun restarts failed workers with the same command line, --overwrite and all:
    a restarted worker continues the run instead of replacing it (or refusing it)."""
    first = train(tiny_mlp, output=tmp_path / "run", overwrite=True)
    before = (first.model_dir / "model.safetensors").read_bytes()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    again = train(tiny_mlp, output=tmp_path / "run", overwrite=True)
    assert again.history == first.history  # nothing retrained: the run had finished
    assert (again.model_dir / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_the_cli_trains_in_two_processes_and_rank_zero_writes(
        tiny_cnn: dict[str, Any], tmp_path: Path) -> None:
    tiny_cnn["train"]["precision"] = "fp32"
    cfg = tmp_path / "cnn.yaml"
    cfg.write_text(yaml.safe_dump(tiny_cnn))
    done = subprocess.run([sys.executable, "-m", "layerwise", "train", str(cfg), "--output",
                           str(tmp_path / "run"), "--nproc", "2", "-q"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert done.stdout.count("results") == 1  # one summary: rank 0's


@pytest.mark.slow
def test_two_nodes_on_loopback_train_one_process_weights(tmp_path: Path) -> None:
    """The multi-node recipe of the README: two torchrun launches (one per "node") meet
    through a c10d rendezvous and train the weights one process trains."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _worker(tmp_path / "one.st", 1, 1)
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={r}",
         "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
         "--rdzv-id=layerwise-test", str(WORKER), str(tmp_path / "nodes.st"), "cnn", "1"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in (0, 1)]
    for node in nodes:
        out, _ = node.communicate(timeout=300)
        assert node.returncode == 0, out[-3000:]
    assert _max_diff(tmp_path / "one.st", tmp_path / "nodes.st") < 1e-5


def test_a_failed_worker_fails_the_command(tmp_path: Path) -> None:
    # regression: `raise typer.Exit(code)` came back from main() as 0
    from layerwise.cli import main

    assert main(["train", str(tmp_path / "missing.yaml"), "--nproc", "2", "-q"]) != 0


def test_replicas_undo_their_layers_when_training_raises() -> None:
    from layerwise import TrainConfig, Trainer
    from layerwise.training import Callback

    class Boom(Callback):
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.1))
    trainer = Trainer(TrainConfig(epochs=2, replicas=2, progress="quiet"),
                      loss_fn=F.cross_entropy, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, (torch.randn(16, 4), torch.randint(0, 4, (16,))))
    assert type(model[1]) is nn.BatchNorm1d and type(model[2]) is nn.Dropout
    assert "forward" not in model[0].__dict__
    model[0].bias.grad = None
    model[0](torch.randn(6, 4)).sum().backward()   # no 1/N gradient hook is left
    assert torch.equal(model[0].bias.grad, torch.full((4,), 6.0))
