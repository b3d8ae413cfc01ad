"""The RL training loop: agent iterations, telemetry, evaluation, checkpoints, run outputs.

    run = train_agent(parse("examples/cartpole_ppo.yaml"), output="runs/cartpole")

writes the same run directory as a supervised run: ``model/`` (the policy artifact),
``metrics.json``, ``history.csv`` (one row per ``log_every`` env steps and per evaluation),
``config.yaml``, ``curves.png`` and ``checkpoints/``.

Exactness: a checkpoint holds the networks, optimizer, schedule, the agent's generator,
the replay buffer, the environments (episode seeds and the actions since each reset),
observation/reward statistics, the telemetry window and the history. A run killed at any
point and resumed from its last checkpoint ends with the same weights as one that never
stopped.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.config import RLConfig
from layerwise.errors import CheckpointError
from layerwise.rl.dqn import DQN
from layerwise.rl.env import EnvPool, RunningMeanStd
from layerwise.rl.policy import Policy
from layerwise.rl.ppo import PPO
from layerwise.rl.report import curves, policy_card
from layerwise.runs import (
    Run,
    check_same,
    lineage,
    open_run,
    recording_failure,
    seed_all,
    write_history,
    write_metrics,
)
from layerwise.training import checkpoint as ckpt
from layerwise.training.callbacks import Callback, SigtermFlag
from layerwise.training.hardware import cores, forward_flops, threads_for

LAST = ("epsilon", "lr", "clip_range", "beta", "action_std")  # logged as the latest value
EPISODE_KEYS = ("return_mean", "return_min", "return_max", "length_mean")


@dataclass
class Window:
    """Telemetry since the last history row (saved in checkpoints)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0


@dataclass
class RunState:
    step: int = 0           # environment steps, all environments together
    iterations: int = 0     # DQN: vector steps; PPO: rollouts
    episodes: int = 0
    train_time: float = 0.0  # seconds acting and learning (evaluation excluded)
    eval_time: float = 0.0
    window: Window = field(default_factory=Window)


def _crossed(old: int, new: int, every: int) -> bool:
    return every > 0 and new // every > old // every


class Runner:
    """Owns the environments, the agent and the loop; :func:`train_agent` is the entry."""

    def __init__(self, cfg: RLConfig, out: Path, *, resume: bool = False,
                 callbacks: list[Callback] | None = None) -> None:
        self.cfg, self.out, self.resume = cfg, out, resume
        self.callbacks = list(callbacks or [])
        self.history: list[dict[str, Any]] = []
        self.state = RunState()
        self.best: dict[str, Any] | None = None  # keep_best: the best evaluated policy
        self.should_stop = False
        self.interrupt_requested = False  # set by SIGTERM: checkpoint and stop

    def setup(self) -> None:
        cfg = self.cfg
        seed_all(cfg.seed)
        self.pool = EnvPool(cfg.env, cfg.seed, cfg.agent.gamma)
        dev = "cuda" if cfg.train.device == "auto" and torch.cuda.is_available() else \
            "cpu" if cfg.train.device == "auto" else cfg.train.device
        self.device = torch.device(dev)
        self.agent: DQN | PPO = (DQN if cfg.agent.algo == "dqn" else PPO)(
            cfg, self.pool, self.device)
        self.choices = {"device": dev, **dict(zip(("threads", "threads_reason"),
                                                   self._threads()))}
        torch.set_num_threads(self.choices["threads"])

    def _threads(self) -> tuple[int, str]:
        if self.cfg.train.threads:
            return self.cfg.train.threads, "set in config"
        if self.device.type != "cpu":
            return cores(), f"all {cores()} cores"
        x = torch.zeros(self.cfg.agent.batch_size, *self.pool.processor.shape)
        net = self.agent.net
        return threads_for(forward_flops(net, lambda: net(x)), cores())

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> Run:
        self.setup()
        path = self.out / "checkpoints" / ckpt.CHECKPOINT
        if self.resume and path.exists():
            self._restore()
        else:
            if self.resume:  # stopped before its first checkpoint: a requeue starts over
                ckpt.say_fresh_start(path)
            self.pool.start()
        for cb in self.callbacks:
            cb.on_fit_start(self, self.agent.net)
        st = self.state
        interrupted = False
        with SigtermFlag(self):
            t0 = time.perf_counter()
            while self._more() and not self.should_stop:
                old = st.step
                n, logs = self.agent.iteration(self.pool, old)
                st.step, st.iterations = old + n, st.iterations + 1
                self._telemetry(n, logs)
                dt = time.perf_counter() - t0
                st.train_time += dt
                st.window.seconds += dt
                self._rows(old, st.step)
                every = self.cfg.train.checkpoint_every
                if self.interrupt_requested or _crossed(old, st.step, every):
                    self._save()
                for cb in self.callbacks:
                    cb.on_step_end(self, st.step, logs)
                if self.interrupt_requested:
                    interrupted = True
                    break
                t0 = time.perf_counter()
        result = self._finish() if not interrupted else Run(
            self.out, self.cfg, history=self.history, interrupted=True, step=st.step)
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        self.pool.close()
        return result

    def _more(self) -> bool:
        """Another iteration fits in train.total_steps (the first one always runs)."""
        per = self.agent.steps_per_iteration
        return self.state.step + per <= self.cfg.train.total_steps or (
            self.state.step == 0 and self.state.iterations == 0)

    def _telemetry(self, n: int, logs: dict[str, float]) -> None:
        st, w = self.state, self.state.window
        w.steps += n
        for ret, length in self.pool.finished:
            w.returns.append(ret)
            w.lengths.append(length)
        st.episodes += len(self.pool.finished)
        self.pool.finished.clear()
        for k, v in logs.items():
            if k in LAST:
                w.last[k] = v
            else:
                w.sums[k] = w.sums.get(k, 0.0) + v
                w.counts[k] = w.counts.get(k, 0) + 1

    def _rows(self, old: int, new: int) -> None:
        t = self.cfg.train
        ev = None
        last = not self._more()
        if _crossed(old, new, t.eval_every) and not last:  # the last one comes in _finish
            ev = self.evaluate()
            if t.keep_best and (self.best is None or
                                ev["return_mean"] >= self.best["eval"]["return_mean"]):
                rms = self.pool.processor.rms
                self.best = {"step": new, "eval": ev, "rms": rms.state_dict() if rms else None,
                             "net": {k: v.detach().clone()
                                     for k, v in self.agent.net.state_dict().items()}}
        if ev is not None or _crossed(old, new, t.log_every) or last:
            self._row(ev)

    def _row(self, ev: dict[str, Any] | None) -> None:
        st, w = self.state, self.state.window
        row: dict[str, Any] = {"step": st.step, "episodes": st.episodes}
        if w.returns:
            row.update(return_mean=float(np.mean(w.returns)), return_min=min(w.returns),
                       return_max=max(w.returns), length_mean=float(np.mean(w.lengths)))
        row.update({k: w.sums[k] / w.counts[k] for k in w.sums})
        row.update(w.last)
        if ev is not None:
            row.update({f"eval_{k}": ev[k] for k in ("return_mean", "return_std",
                                                     "return_min", "return_max",
                                                     "length_mean")})
        row["steps_per_second"] = round(w.steps / w.seconds, 1) if w.seconds else None
        row["time"] = round(st.train_time, 3)
        self.history.append(row)
        st.window = Window()
        self._progress(row)
        for cb in self.callbacks:
            cb.on_epoch_end(self, len(self.history) - 1, row)

    def evaluate(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        ev = self.policy().evaluate()
        self.state.eval_time += time.perf_counter() - t0
        return ev

    def policy(self, best: bool = False) -> Policy:
        """The current policy (frozen statistics), or with ``best`` the kept best one."""
        net, rms = self.agent.net, self.pool.processor.rms
        rms_state = rms.state_dict() if rms is not None else None
        if best and self.best is not None:
            net = copy.deepcopy(net)
            net.load_state_dict(self.best["net"])
            rms_state = self.best["rms"]
        frozen = None
        if rms_state is not None:
            frozen = RunningMeanStd(tuple(rms_state["mean"].shape))
            frozen.load_state_dict(rms_state)
        return Policy(net, self.cfg, self.pool.obs_spec, self.pool.action_spec, frozen)

    def _progress(self, row: dict[str, Any]) -> None:
        if self.cfg.train.progress == "quiet":  # otherwise one line per history row
            return
        total = self.cfg.train.total_steps
        parts = [f"{self.cfg.name}: step {row['step']:,}/{total:,}"]
        if "return_mean" in row:
            parts.append(f"return {row['return_mean']:.1f} [{row['return_min']:.0f}, "
                         f"{row['return_max']:.0f}]")
        if "eval_return_mean" in row:
            parts.append(f"eval {row['eval_return_mean']:.1f}")
        for k in ("loss", "policy_loss", "entropy", "epsilon"):
            if k in row:
                parts.append(f"{k} {row[k]:.3g}")
        if row.get("steps_per_second"):
            parts.append(f"{row['steps_per_second']:.0f} steps/s")
        print("  ".join(parts), file=sys.stderr, flush=True)

    # -- checkpoints -------------------------------------------------------------------------
    def _save(self) -> None:
        if not ckpt.is_finite(self.agent.net):
            import warnings

            warnings.warn("the network has non-finite weights; checkpoint not written",
                          stacklevel=2)
            return
        st = asdict(self.state)
        state = {"format": 1, "kind": "rl",
                 "agent": self.agent.state_dict(self.cfg.train.checkpoint_replay),
                 "pool": self.pool.state_dict(), "runner": st, "history": self.history,
                 "best": self.best,
                 "rng": ckpt.rng_state(), "config": self.cfg.model_dump(mode="json")}
        ckpt.save(self.out / "checkpoints" / ckpt.CHECKPOINT, state)

    def _restore(self) -> None:
        state = ckpt.load(self.out / "checkpoints" / ckpt.CHECKPOINT)
        if state.get("kind") != "rl":
            raise CheckpointError(f"{self.out / 'checkpoints'}: the checkpoint is not from a "
                                  "reinforcement-learning run")
        check_same(state["config"], self.cfg, self.out)
        self.agent.load_state_dict(state["agent"])
        self.pool.load_state_dict(state["pool"])
        r = dict(state["runner"])
        r["window"] = Window(**r["window"])
        self.state = RunState(**r)
        self.history = list(state["history"])
        self.best = state.get("best")
        ckpt.set_rng_state(state["rng"])

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> Run:
        cfg, st, out = self.cfg, self.state, self.out
        self._save()
        last = self.history[-1] if self.history else {}
        final = self.evaluate()
        if last.get("step") == st.step:
            last.update({f"eval_{k}": final[k] for k in ("return_mean", "return_std",
                                                         "return_min", "return_max",
                                                         "length_mean")})
        n_params = sum(p.numel() for p in self.agent.net.parameters())
        use_best = self.best is not None and \
            self.best["eval"]["return_mean"] > final["return_mean"]
        ev = self.best["eval"] if use_best and self.best else final
        metrics: dict[str, Any] = {
            "evaluation": ev,  # of the saved policy
            "final_evaluation": final,
            "kept": {"policy": "best" if use_best else "last",
                     "step": self.best["step"] if use_best and self.best else st.step},
            "evaluations": [{"step": h["step"], "return_mean": h["eval_return_mean"]}
                            for h in self.history if "eval_return_mean" in h],
            "training": {"env_steps": st.step, "episodes": st.episodes,
                         "iterations": st.iterations, "seconds": round(st.train_time, 3),
                         "eval_seconds": round(st.eval_time, 3),
                         "steps_per_second": round(st.step / st.train_time, 1)
                         if st.train_time else None,
                         "parameters": n_params, **self.agent.summary()},
            "choices": self.choices,
        }
        made = lineage(cfg, env_id=cfg.env.id, libraries={"gymnasium": _gymnasium()})
        card = policy_card(cfg.model_dump(mode="json"), metrics, made)
        headline = {k: ev[k] for k in ("episodes", "seed", "return_mean", "return_std",
                                       "return_min", "return_max", "length_mean")}
        self.policy(best=use_best).save(out / "model", metrics={"evaluation": headline},
                                        lineage=made, card=card,
                                        extra={"parameters": n_params,
                                               "kept": metrics["kept"]})
        write_metrics(out / "metrics.json", metrics)
        write_history(out / "history.csv", self.history)
        curves(self.history, out / "curves.png")
        return Run(out, cfg, metrics, self.history, step=st.step)


def _gymnasium() -> str:
    import gymnasium

    return str(gymnasium.__version__)


def train_agent(config: RLConfig, *, output: str | Path | None = None, resume: bool = False,
                callbacks: list[Callback] | None = None, progress: str | None = None,
                overwrite: bool = False) -> Run:
    """Train an agent from an RL config and write the run directory (see module docstring)."""
    cfg = config
    if progress:
        cfg.train.progress = progress  # type: ignore[assignment]
    rd = open_run(cfg, output, resume=resume, overwrite=overwrite)
    with recording_failure(rd):
        return Runner(cfg, rd.path, resume=resume and rd.has_checkpoint(),
                      callbacks=callbacks).run()
