"""``layerwise sample MODEL_DIR --n 64 [--class C] [--steps S] --output grid.png`` and
``layerwise embed MODEL_DIR INPUT --output vectors.npz``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def sample(
    model_dir: Annotated[Path, typer.Argument(help="a vae, gan or diffusion model directory")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="samples to draw")] = 64,
    class_: Annotated[Optional[str], typer.Option("--class", help="the class to draw, as "  # noqa: UP007
                      "in the data (class-conditional models; see --list-classes)")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="sampler steps "  # noqa: UP007
                     "(diffusion: DDIM steps; default: the model's sample_steps)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write a PNG "  # noqa: UP007
                      "grid of the samples")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="write the "  # noqa: UP007
                          "samples one by one (--format png) or as one samples.npz")] = None,
    format_: Annotated[str, typer.Option("--format", help="with --output-dir: png or "
                       "npz")] = "png",
    cols: Annotated[int, typer.Option("--cols", min=1, help="images per grid row")] = 8,
    list_classes: Annotated[bool, typer.Option("--list-classes", help="print the classes "
                            "and exit")] = False,
) -> None:
    """Draw new samples from a generative model: a PNG grid, PNG files or a .npz."""
    import torch

    from layerwise.api import load
    from layerwise.errors import ConfigError
    from layerwise.files import check_output_file, check_output_folder
    from layerwise.inference.predictor import Predictor

    if not list_classes:  # the outputs are checked before any work
        if format_ not in ("png", "npz"):
            raise ConfigError(f"--format must be png or npz; got {format_!r}")
        if output is None and output_dir is None:
            raise ConfigError("give --output grid.png and/or --output-dir DIR")
        check_output_file(output, "--output", (".png",))
        check_output_folder(output_dir, "--output-dir")
    model = load(model_dir)
    if not isinstance(model, Predictor):
        raise ConfigError(f"{model_dir} is a policy; sample needs a vae, gan or diffusion model")
    if list_classes:
        sys.stdout.write("\n".join(model.classes()) + "\n")
        return
    x = model.sample(n, label=class_, steps=steps, seed=seed)
    if x.ndim != 4:
        raise ConfigError("this model samples table rows, not images; use --output-dir "
                          "with --format npz")
    from layerwise.evaluation.generative import write_grid

    if output is not None:
        write_grid(torch.from_numpy(x), output, cols)
        sys.stdout.write(f"grid:    {output}\n")
    if output_dir is not None:
        _write_samples(x, output_dir, format_, class_)


def _write_samples(x: object, output_dir: Path, format_: str, label: str | None) -> None:
    """The samples one by one as PNG files, or as one samples.npz."""
    import numpy as np

    output_dir.mkdir(parents=True, exist_ok=True)
    n = len(x)  # type: ignore[arg-type]
    if format_ == "npz":
        np.savez_compressed(output_dir / "samples.npz", images=x,
                            label=np.array([label or ""] * n))
        sys.stdout.write(f"samples: {output_dir / 'samples.npz'}\n")
        return
    from PIL import Image

    for i, img in enumerate(x):  # type: ignore[call-overload]
        arr = (np.clip(img.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(
            output_dir / f"sample_{i:04d}.png", format="PNG")
    sys.stdout.write(f"samples: {n} PNG files in {output_dir}\n")


def embed(
    model_dir: Annotated[Path, typer.Argument(help="an autoencoder or vae model directory")],
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV / JSONL / Parquet / "
                      ".npz file, or a folder of images")],
    output: Annotated[Path, typer.Option("--output", "-o", help="vectors as .npz or .csv")],
) -> None:
    """Encode rows to latent vectors (autoencoder code, VAE posterior mean)."""
    import numpy as np

    from layerwise.api import load
    from layerwise.cli.predict import read_input
    from layerwise.errors import ConfigError
    from layerwise.files import check_output_file
    from layerwise.inference.predictor import Predictor

    check_output_file(output, "--output", (".npz", ".csv"))
    model = load(model_dir)
    if not isinstance(model, Predictor):
        raise ConfigError(f"{model_dir} is a policy; embed needs an autoencoder or vae")
    z = model.embed(read_input(input_))
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".npz":
        np.savez_compressed(output, embeddings=z)
    else:
        header = ",".join(f"z{i}" for i in range(z.shape[1]))
        np.savetxt(output, z, delimiter=",", header=header, comments="", fmt="%.6g")
    sys.stdout.write(f"embeddings: {output} ({z.shape[0]} rows x {z.shape[1]})\n")
