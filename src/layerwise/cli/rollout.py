"""``layerwise rollout MODEL_DIR [--episodes N] [--video out.gif] [--seed S]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def rollout(
    model_dir: Annotated[Path, typer.Argument(help="a policy directory (runs/<name>/model)")],
    episodes: Annotated[int, typer.Option("--episodes", "-n", min=1, help="episodes to "
                                          "run")] = 5,
    video: Annotated[Optional[Path], typer.Option("--video", help="record the episodes as "  # noqa: UP007
                     "an animated GIF (needs an environment that renders; the classic-control "
                     "ones need pygame, in the rl extra)")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="seed of the episodes")] = 0,
    fps: Annotated[int, typer.Option("--fps", min=1, help="frames per second of the "
                                     "video")] = 30,
    every: Annotated[int, typer.Option("--every", min=1, help="keep every N-th frame (a "
                                       "smaller GIF)")] = 1,
    stochastic: Annotated[bool, typer.Option("--stochastic", help="sample actions instead "
                                             "of taking the most likely one")] = False,
) -> None:
    """Run a policy for a few episodes, print their returns, optionally record a GIF."""
    from layerwise.api import load
    from layerwise.errors import ConfigError
    from layerwise.files import check_output_file
    from layerwise.rl.episodes import rollout as run_rollout
    from layerwise.rl.episodes import write_gif
    from layerwise.rl.policy import Policy

    check_output_file(video, "--video", (".gif",))  # Pillow writes GIF
    policy = load(model_dir)
    if not isinstance(policy, Policy):
        raise ConfigError(f"{model_dir} holds a supervised model; rollout runs policies "
                          "(use layerwise predict)")
    result, frames = run_rollout(policy, episodes, seed, render=video is not None,
                                 deterministic=not stochastic, every=every)
    for i, (ret, length) in enumerate(zip(result["returns"], result["lengths"])):
        print(f"episode {i + 1}: return {ret:.2f}, length {length}")
    print(f"mean return {result['return_mean']:.2f} ± {result['return_std']:.2f} over "
          f"{episodes} episodes (seed {seed})")
    if video is not None:
        write_gif(frames, video, fps)
        print(f"{len(frames)} frames written to {video}")
