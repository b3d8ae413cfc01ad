"""What an RL run writes for people: history.csv, learning curves (PNG), the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def curves(history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Episode returns (training and evaluation) and the losses against env steps."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    def dots(x: list[float]) -> dict[str, Any]:
        # a line through one point draws nothing: a single log row shows as a marker
        return {"marker": "o"} if len(x) == 1 else {}

    losses = [k for k in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl")
              if any(h.get(k) is not None for h in history)]
    fig, axes = plt.subplots(1, 2 if losses else 1, figsize=(10 if losses else 5, 3.6))
    axes = list(axes) if losses else [axes]
    x, y = series("return_mean")
    axes[0].plot(x, y, label="training episodes (mean)", **dots(x))
    lo, hi = series("return_min")[1], series("return_max")[1]
    if len(lo) == len(x) == len(hi):
        axes[0].fill_between(x, lo, hi, alpha=0.15, label="training min–max")
    x, y = series("eval_return_mean")
    if x:
        axes[0].plot(x, y, marker="o", label="evaluation (deterministic)")
    axes[0].set_xlabel("environment steps")
    axes[0].set_ylabel("episode return")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    for k in losses:
        x, y = series(k)
        axes[1].plot(x, y, label=k, **dots(x))
    if losses:
        axes[1].set_xlabel("environment steps")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    fig.subplots_adjust(left=0.09 if losses else 0.17, right=0.98, bottom=0.14, top=0.96,
                        wspace=0.22)  # fixed margins: tight_layout costs more than the plot
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def policy_card(config: dict[str, Any], metrics: dict[str, Any],
                lineage: dict[str, Any]) -> str:
    """The model card of a policy artifact (markdown)."""
    env, agent, net, train = (config["env"], config["agent"], config["network"],
                              config["train"])
    ev, tr = metrics.get("evaluation", {}), metrics.get("training", {})
    params = ", ".join(f"{k} {v}" for k, v in agent.items() if k != "algo")
    wrappers = [w for w, on in (("observation normalisation", env["normalize_obs"]),
                                (f"{env['frame_stack']} stacked frames",
                                 env["frame_stack"] > 1),
                                ("reward normalisation", env["normalize_reward"]),
                                (f"reward scale {env['reward_scale']}",
                                 env["reward_scale"] != 1.0)) if on]
    lines = [f"# Model card: {config['name']}", "",
             "Written by layerwise at the end of training. This model is a *policy*: it "
             "maps an observation of the environment to an action.", "",
             "## Policy", "",
             f"- environment: `{env['id']}`" + (f" with {env['kwargs']}" if env["kwargs"]
                                                else ""),
             f"- algorithm: {agent['algo'].upper()} ({params})",
             f"- network: `{net['family']}` " + ", ".join(
                 f"{k} {v}" for k, v in net.items() if k != "family"),
             f"- parameters: {metrics.get('training', {}).get('parameters', 'n/a')}",
             f"- observation processing: {', '.join(wrappers) or 'none'}", "",
             "## Training", "",
             f"- {tr.get('env_steps', 'n/a')} environment steps in "
             f"{tr.get('seconds', 'n/a')} s ({tr.get('steps_per_second', 'n/a')} steps/s), "
             f"{tr.get('episodes', 'n/a')} episodes, {env['num_envs']} environment(s)",
             f"- optimizer {train['optimizer']['name']} (lr {train['optimizer']['lr']}), "
             f"schedule {train['schedule']['name']}",
             f"- seed {config['seed']}; config hash `{lineage.get('config_hash')}`", "",
             "## Evaluation", ""]
    kept = metrics.get("kept", {})
    if kept.get("policy") == "best":
        last = metrics["final_evaluation"]
        lines.append(f"- saved policy: the best periodic evaluation (step {kept['step']}); the "
                     f"last policy scored {last['return_mean']:.2f} on the same episodes")
    if ev:
        lines.append(f"- {ev['episodes']} deterministic episodes (seed {ev['seed']}): return "
                     f"{ev['return_mean']:.2f} ± {ev['return_std']:.2f} (min "
                     f"{ev['return_min']:.2f}, max {ev['return_max']:.2f}), mean length "
                     f"{ev['length_mean']:.1f}")
    lines += ["", "## Use", "", "```python", "import layerwise as lw",
              "policy = lw.load(\"<this directory>\")",
              "action = policy.predict(observation)   # a raw observation of the environment",
              "```", "", "`layerwise evaluate <dir>` runs evaluation episodes; "
              "`layerwise rollout <dir> --video out.gif` records them.", "",
              "## Limitations", "",
              "- The policy was trained and evaluated only in the environment above; its "
              "behaviour elsewhere (other dynamics, other reward) is unknown.",
              "- Evaluation returns come from a finite number of seeded episodes; they "
              "estimate, not guarantee, the return of a new episode."]
    return "\n".join(lines) + "\n"
