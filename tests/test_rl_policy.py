"""The policy artifact: it round-trips exactly, takes raw observations, and refuses pickles.

One small PPO run with observation normalisation and frame stacking (state that must
travel with the policy) is trained per module; each test works on its own copy.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

import layerwise as lw
from layerwise import artifact as art
from layerwise.cli import main
from layerwise.errors import ArtifactError, ConfigError, DataError, UnsafeArtifactError
from layerwise.inference.predictor import Predictor
from layerwise.rl.policy import Policy
from layerwise.training import Callback
from tests.rl_helpers import CORRIDOR_PPO, config

CFG = config(CORRIDOR_PPO, env={"id": "CartPole-v1", "num_envs": 2, "normalize_obs": True,
                                "frame_stack": 2},
             train={"total_steps": 256, "eval_episodes": 2})


class Keep(Callback):
    """Keep the runner, to compare its in-memory policy with the saved one."""

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        self.runner = trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Policy]:
    out = tmp_path_factory.mktemp("rl_policy") / "run"
    keep = Keep()
    lw.train(CFG, output=out, callbacks=[keep])
    return out, keep.runner.policy()  # the in-memory policy of the finished run


@pytest.fixture
def model_dir(trained: tuple[Path, Policy], tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(trained[0] / "model", d)
    return d


def _observations(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.5, (n, 4)).astype(np.float32)


def test_run_outputs_and_metadata(trained: tuple[Path, Policy]) -> None:
    out = trained[0]
    for name in ("model/layerwise.json", "model/model.safetensors", "model/card.md",
                 "metrics.json", "history.csv", "config.yaml", "curves.png",
                 "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "model" / "layerwise.json").read_text())
    assert meta["kind"] == "policy" and meta["algo"] == "ppo" and meta["family"] == "mlp"
    assert len(meta["obs_normalizer"]["mean"]) == 4  # one frame; stacking happens after
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"evaluation", "training", "choices"} <= set(metrics)
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"step", "episodes", "return_mean", "return_min", "return_max", "length_mean",
            "policy_loss", "value_loss", "entropy", "approx_kl", "explained_variance",
            "steps_per_second", "eval_return_mean"} <= set(header)
    assert "## Evaluation" in (out / "model" / "card.md").read_text()


def test_loaded_policy_acts_like_the_in_memory_one(trained: tuple[Path, Policy]) -> None:
    live = trained[1]
    loaded = lw.load(trained[0] / "model")
    assert isinstance(loaded, Policy)
    obs = _observations()
    for policy in (live, loaded):
        policy.reset()
    assert np.array_equal(live.predict(obs), loaded.predict(obs))  # normalised + stacked
    assert np.array_equal(live.predict(obs[::-1]), loaded.predict(obs[::-1]))
    for k, v in live.net.state_dict().items():
        assert torch.equal(v, loaded.net.state_dict()[k])


def test_save_then_load_again_is_stable(model_dir: Path, tmp_path: Path) -> None:
    first = Policy.load(model_dir)
    first.save(tmp_path / "again")
    second = Policy.load(tmp_path / "again")
    obs = _observations()
    assert np.array_equal(first.predict(obs), second.predict(obs))


def test_predict_takes_raw_observations(model_dir: Path) -> None:
    import gymnasium as gym

    policy = lw.load(model_dir)
    raw, _ = gym.make("CartPole-v1").reset(seed=0)
    action = policy.predict(raw)
    assert isinstance(action, int) and action in (0, 1)
    assert policy.predict(raw.tolist()) in (0, 1)  # a plain list works too
    batch = policy.predict(np.stack([raw, raw]))
    assert batch.shape == (2,) and batch.dtype == np.int64
    with pytest.raises(DataError, match=r"shape \[3\].*expects \[4\]"):
        policy.predict([1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="not numeric"):
        policy.predict(["a", "b", "c", "d"])


def test_evaluation_of_the_artifact_matches_the_run(trained: tuple[Path, Policy]) -> None:
    out = trained[0]
    recorded = json.loads((out / "metrics.json").read_text())["evaluation"]
    assert lw.evaluate(out / "model") == recorded  # same seeds, frozen statistics
    other = lw.evaluate(out / "model", episodes=3, seed=7)
    assert other["episodes"] == 3 and other["seed"] == 7
    with pytest.raises(ConfigError, match="is a policy"):
        lw.evaluate(out / "model", data="rows.csv")


def test_pickled_weights_are_refused(model_dir: Path) -> None:
    state = {k: v for k, v in Policy.load(model_dir).net.state_dict().items()}
    (model_dir / art.WEIGHTS).write_bytes(pickle.dumps(state))
    with pytest.raises(UnsafeArtifactError, match="pickle"):
        lw.load(model_dir)
    torch.save(state, model_dir / art.WEIGHTS)
    with pytest.raises(UnsafeArtifactError, match="zip"):
        lw.load(model_dir)


def _edit_meta(model_dir: Path, **changes: Any) -> None:
    path = model_dir / art.META
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, message", [
    ({"algo": "sac"}, "algorithm 'sac' is not known"),
    ({"family": "evil"}, "network family 'evil' is not registered"),
    ({"format_version": 99}, "newer than this layerwise reads"),
    ({"config": "examples/cartpole_ppo.yaml"}, "'config' must be a JSON object"),
    ({"observation_space": {"type": "box", "shape": [5], "dtype": "float32",
                            "image": False}}, r"obs_normalizer has shape \[4\]; expected \[5\]"),
])
def test_damaged_metadata_is_refused(model_dir: Path, changes: dict[str, Any],
                                     message: str) -> None:
    _edit_meta(model_dir, **changes)
    with pytest.raises(ArtifactError, match=message):
        lw.load(model_dir)


def test_the_supervised_loader_refuses_a_policy(model_dir: Path) -> None:
    with pytest.raises(ArtifactError, match="holds a policy, not a supervised model"):
        Predictor.load(model_dir)


def test_cli_evaluate_and_rollout_with_a_video(model_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(model_dir), "--episodes", "2", "--seed", "3"]) == 0
    assert "return_mean" in capsys.readouterr().out
    gif = tmp_path / "play.gif"
    code = main(["rollout", str(model_dir), "--episodes", "1", "--video", str(gif),
                 "--every", "10"])
    if code != 0 and "pygame" in capsys.readouterr().err:
        pytest.skip("pygame (the rl extra) is needed to render CartPole")
    assert code == 0 and gif.read_bytes()[:6] == b"GIF89a"
    from PIL import Image

    assert Image.open(gif).n_frames >= 2
    assert main(["rollout", str(model_dir), "--video", str(tmp_path / "x.mp4")]) == 2
    assert ".gif" in capsys.readouterr().err


def test_cli_trains_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(CORRIDOR_PPO))
    assert main(["train", str(path), "--output", str(tmp_path / "r"), "-q",
                 "--set", "train.total_steps=128"]) == 0
    out = capsys.readouterr().out
    assert "evaluation over 3 episodes" in out and "128 environment steps" in out
    assert (tmp_path / "r" / "model" / "layerwise.json").is_file()


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config(CORRIDOR_PPO, env={"id": "CartPol-v1"})))
    assert main(["train", str(path), "--output", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'CartPole-v1'" in err
    assert "Traceback" not in err
