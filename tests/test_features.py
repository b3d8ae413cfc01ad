"""Feature encoders: fitted on the training split only, and strict about what they accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from layerwise.config import BinaryOutput, Config, parse
from layerwise.data.build import Dataset, build, encode_rows
from layerwise.data.features import BinaryEncoder, CategoryEncoder, ImageEncoder, NumericEncoder
from layerwise.data.table import Table
from layerwise.errors import DataError


def config(path: Path, inputs: list[dict[str, Any]], *, output: str = "y",
           model: str = "mlp", **data: Any) -> Config:
    return parse({"data": {"path": str(path), **data}, "inputs": inputs,
                  "outputs": [{"name": output, "type": "category"}],
                  "model": {"family": model}})


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def column(ds: Dataset, split: str, j: int = 0) -> np.ndarray:
    data = getattr(ds, split)
    return data.inputs["numeric"][:, j].numpy()


# ----------------------------------------------------------------------------- numeric


@pytest.mark.parametrize("normalize", ["standard", "minmax"])
def test_numeric_encoder_is_fitted_on_the_training_rows_only(tmp_path: Path,
                                                             normalize: str) -> None:
    train = [3.0, 5.0, 6.0, 9.0, 12.0, 1.0, 4.0, 8.0]
    rows = [f"{v},{'ab'[i % 2]},train" for i, v in enumerate(train)]
    rows += [f"{1e6 + i},{'ab'[i % 2]},test" for i in range(4)]
    rows += [f"{-1e6 - i},{'ab'[i % 2]},validation" for i in range(4)]
    p = write_csv(tmp_path / "far.csv", "x,y,part", rows)
    ds = build(config(p, [{"name": "x", "type": "numeric", "normalize": normalize}],
                      split={"column": "part"}))
    assert ds.info["rows"] == {"train": 8, "validation": 4, "test": 4}
    enc = ds.schema.numeric[0]
    assert isinstance(enc, NumericEncoder)
    if normalize == "standard":
        assert enc.shift == pytest.approx(np.mean(train))
        assert enc.scale == pytest.approx(np.std(train))
        assert column(ds, "train").mean() == pytest.approx(0.0, abs=1e-6)
    else:
        assert enc.shift == pytest.approx(min(train))
        assert enc.scale == pytest.approx(max(train) - min(train))
    assert column(ds, "test").min() > 1000  # test rows are far outside the fitted range


def test_constant_column_does_not_divide_by_zero(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "flat.csv", "x,y", [f"7,{'ab'[i % 2]}" for i in range(20)])
    ds = build(config(p, [{"name": "x", "type": "numeric"}]))
    assert ds.schema.numeric[0].scale == 1.0
    assert torch.isfinite(ds.train.inputs["numeric"]).all()


def test_split_column_with_an_unknown_name_is_an_error(tmp_path: Path) -> None:
    rows = [f"{i},{'ab'[i % 2]},train" for i in range(10)] + ["10,a,holdout"]
    p = write_csv(tmp_path / "parts.csv", "x,y,part", rows)
    with pytest.raises(DataError) as info:
        build(config(p, [{"name": "x", "type": "numeric"}], split={"column": "part"}))
    assert type(info.value) is DataError
    msg = str(info.value)
    assert str(p) in msg and "line 12" in msg and "column 'part'" in msg and "'holdout'" in msg


# ----------------------------------------------------------------------------- category


def _colours(tmp_path: Path) -> Dataset:
    """'red'/'blue' in train; 'green' only in the test rows."""
    rows = [f"{'red' if i % 3 else 'blue'},{'ab'[i % 2]},train" for i in range(12)]
    rows += [f"green,{'ab'[i % 2]},test" for i in range(4)]
    p = write_csv(tmp_path / "colours.csv", "colour,y,part", rows)
    return build(config(p, [{"name": "colour", "type": "category"}],
                        split={"column": "part"}))


def test_category_vocabulary_comes_from_training_rows_only(tmp_path: Path) -> None:
    ds = _colours(tmp_path)
    enc = ds.schema.category[0]
    assert isinstance(enc, CategoryEncoder)
    assert enc.vocab == ["<unknown>", "red", "blue"]  # most frequent first, 0 is unknown
    assert ds.test is not None
    assert ds.test.inputs["category"][:, 0].tolist() == [0, 0, 0, 0]  # 'green' is unseen


def test_unknown_category_maps_to_index_zero_at_prediction_time(tmp_path: Path) -> None:
    ds = _colours(tmp_path)
    rows = Table({"colour": np.array(["red", "purple", "blue", ""], dtype=object)}, "input")
    with pytest.raises(DataError, match=r"input, row 4, column 'colour'"):
        encode_rows(ds.schema, rows, targets=False)  # an empty cell is still an error
    rows = rows.take(np.arange(3))
    data, _ = encode_rows(ds.schema, rows, targets=False)
    assert data.inputs["category"][:, 0].tolist() == [1, 0, 2]


def test_pandas_missing_values_are_missing(tmp_path: Path) -> None:
    # regression: pd.NA (nullable string columns) became the category '<NA>', silently
    # unknown, and a "word" in numeric columns
    ds = _colours(tmp_path)
    frame = pd.DataFrame({"colour": pd.array(["red", None], dtype="string")})
    table = Table({"colour": frame["colour"].to_numpy()}, "DataFrame")
    with pytest.raises(DataError, match=r"DataFrame, row 2, column 'colour': the cell is empty"):
        encode_rows(ds.schema, table, targets=False)
    enc = NumericEncoder(parse({"data": {"path": "x.csv"}, "inputs": [
        {"name": "x", "type": "numeric"}], "outputs": [{"name": "y", "type": "category"}],
        "model": {"family": "mlp"}}).inputs[0])
    col = np.array([1.5, pd.NA, pd.NaT], dtype=object)
    with pytest.raises(DataError, match=r"row 2, column 'x': the cell is empty"):
        enc.check(col, Table({"x": col}, "input"))


def test_rare_categories_map_to_unknown(tmp_path: Path) -> None:
    rows = [f"{'common' if i else 'rare'},{'ab'[i % 2]}" for i in range(20)]
    p = write_csv(tmp_path / "rare.csv", "c,y", rows)
    ds = build(config(p, [{"name": "c", "type": "category", "min_count": 2}],
                      split={"test": 0.0, "validation": 0.0}))
    enc = ds.schema.category[0]
    assert enc.vocab == ["<unknown>", "common"]
    assert ds.train.inputs["category"][0, 0].item() == 0


# ----------------------------------------------------------------------------- binary


@pytest.mark.parametrize(("yes", "no"), [("yes", "no"), ("true", "false"), ("True", "FALSE"),
                                         ("Y", "n"), ("1", "0")])
def test_binary_columns_map_truthy_words_to_one(tmp_path: Path, yes: str, no: str) -> None:
    flags = [i % 3 == 0 for i in range(20)]
    rows = [f"{yes if f else no},{'ab'[i % 2]}" for i, f in enumerate(flags)]
    p = write_csv(tmp_path / "flags.csv", "flag,y", rows)
    ds = build(config(p, [{"name": "flag", "type": "binary"}],
                      split={"test": 0.0, "validation": 0.0}))
    assert column(ds, "train").tolist() == [float(f) for f in flags]
    enc = ds.schema.numeric[0]
    assert isinstance(enc, BinaryEncoder)
    assert enc.transform(np.array(["yes", "No", "TRUE", "f"], dtype=object)).tolist() == \
        [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(("values", "labels"), [
    (["Yes", "No", "Yes"], ["No", "Yes"]), (["true", "false"], ["false", "true"]),
    ([True, False, True], [False, True]), ([1, 0], [0, 1]),
    (["Y", "Y"], ["N", "Y"]), (["No", "No"], ["No", "Yes"]), ([False], [False, True])])
def test_binary_labels_are_the_data_values(values: list[Any], labels: list[Any]) -> None:
    # regression: a Yes/No column decoded as True/False; a side the training data lacks
    # takes the partner word of the other side, in its case
    enc = BinaryEncoder(BinaryOutput(name="y", type="binary"), output=True)
    enc.fit(np.array(values, dtype=object))
    assert enc.labels() == labels
    assert [type(v) for v in enc.labels()] == [type(v) for v in labels]
    again = BinaryEncoder(enc.cfg, output=True)
    again.load_state(json.loads(json.dumps(enc.state())))
    assert again.labels() == labels


def test_binary_state_saved_before_labels_were_kept_decodes_as_before() -> None:
    cfg = BinaryOutput(name="y", type="binary")
    old = BinaryEncoder(cfg, output=True)
    old.load_state({"negative": "false", "positive": "true"})
    assert old.labels() == [False, True]
    other = BinaryEncoder(cfg, output=True)
    other.load_state({"negative": "F", "positive": "M"})
    assert other.labels() == ["F", "M"]


def test_binary_with_other_labels_uses_their_order(tmp_path: Path) -> None:
    rows = [f"{'MF'[i % 2]},{'ab'[i % 3 == 0]}" for i in range(20)]
    p = write_csv(tmp_path / "mf.csv", "sex,y", rows)
    ds = build(config(p, [{"name": "sex", "type": "binary"}],
                      split={"test": 0.0, "validation": 0.0}))
    enc = ds.schema.numeric[0]
    assert (enc.negative, enc.positive) == ("F", "M")
    assert column(ds, "train").tolist() == [float(i % 2 == 0) for i in range(20)]
    with pytest.raises(DataError, match=r"column 'sex': value 'X' is neither"):
        enc.transform(np.array(["X"], dtype=object))


def test_binary_column_with_three_values_is_an_error(tmp_path: Path) -> None:
    rows = [f"{'abc'[i % 3]},{'ab'[i % 2]}" for i in range(20)]
    p = write_csv(tmp_path / "three.csv", "b,y", rows)
    with pytest.raises(DataError) as info:
        build(config(p, [{"name": "b", "type": "binary"}]))
    assert type(info.value) is DataError
    msg = str(info.value)
    assert "binary column 'b' has 3 distinct values" in msg and "type: category" in msg


def test_binary_fill_value_with_other_labels(tmp_path: Path) -> None:
    # regression: the bool fill counted as a third label ('True'), so build always failed
    rows = [f"{'' if i == 4 else 'MF'[i % 2]},{'ab'[i % 3 == 0]}" for i in range(20)]
    p = write_csv(tmp_path / "gap.csv", "sex,y", rows)
    ds = build(config(p, [{"name": "sex", "type": "binary", "missing": "constant",
                           "fill_value": True}], split={"test": 0.0, "validation": 0.0}))
    enc = ds.schema.numeric[0]
    assert (enc.negative, enc.positive) == ("F", "M")
    expected = [float(i % 2 == 0 or i == 4) for i in range(20)]
    assert column(ds, "train").tolist() == expected


def test_binary_empty_cell_is_an_error_by_default(tmp_path: Path) -> None:
    rows = [f"{'' if i == 4 else 'yn'[i % 2]},{'ab'[i % 2]}" for i in range(20)]
    p = write_csv(tmp_path / "gap.csv", "b,y", rows)
    with pytest.raises(DataError, match=r"line 6, column 'b': the cell is empty"):
        build(config(p, [{"name": "b", "type": "binary"}]))


# ----------------------------------------------------------------------------- images


def image_config(path: Path, **image: Any) -> Config:
    return config(path, [{"name": "image", "type": "image", **image}], output="label",
                  model="cnn")


def _npz(tmp_path: Path, images: np.ndarray) -> Path:
    p = tmp_path / "images.npz"
    np.savez(p, image=images, label=np.array(list("ab") * (len(images) // 2)))
    return p


@pytest.mark.parametrize(("shape", "channels"), [((20, 8, 6), 1), ((20, 8, 6, 1), 1),
                                                 ((20, 8, 6, 3), 3), ((20, 1, 8, 6), 1),
                                                 ((20, 3, 8, 6), 3)])
def test_image_arrays_become_nchw(tmp_path: Path, shape: tuple[int, ...], channels: int
                                  ) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    ds = build(image_config(_npz(tmp_path, pixels)))
    x = ds.train.inputs["image"]
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (channels, 8, 6)
    enc = ds.schema.images[0]
    assert enc.scale == 255.0 and len(enc.mean) == channels


def test_image_statistics_do_not_depend_on_the_thread_count(tmp_path: Path) -> None:
    # regression: a parallel float32 mean made the normalization (and so every weight)
    # differ by an ulp between a 2-thread process and the 1-thread ranks of torchrun
    pixels = np.random.default_rng(5).integers(0, 256, (3000, 2, 28, 28)).astype(np.uint8)
    stats = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            enc = ImageEncoder(image_config(tmp_path / "x.npz").inputs[0])
            enc.fit(pixels)
            stats.append((enc.mean, enc.std))
    finally:
        torch.set_num_threads(threads)
    assert stats[0] == stats[1]
    exact = pixels.astype(np.float64) / 255.0
    assert np.allclose(stats[0][0], exact.mean(axis=(0, 2, 3)), rtol=1e-7)
    assert np.allclose(stats[0][1], exact.std(axis=(0, 2, 3), ddof=1), rtol=1e-7)


def test_channels_last_images_keep_their_pixels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (4, 5, 6, 3)).astype(np.uint8)
    enc = ImageEncoder(image_config(tmp_path / "x.npz").inputs[0])
    x = enc.parse(pixels, Table({"image": pixels}, "array"))[0]
    assert x.shape == (4, 3, 5, 6)
    assert np.array_equal(x[2, 1], pixels[2, :, :, 1])  # channel 1 of image 2, untouched


def test_rgba_arrays_drop_alpha(tmp_path: Path) -> None:
    # regression: [N,H,W,4] was read as 8 channels of height 8, and the model crashed
    pixels = np.random.default_rng(2).integers(0, 256, (20, 8, 8, 4)).astype(np.uint8)
    ds = build(image_config(_npz(tmp_path, pixels)))
    assert tuple(ds.train.inputs["image"].shape[1:]) == (3, 8, 8)


def test_images_with_the_wrong_channel_count_are_refused(tmp_path: Path) -> None:
    # regression: a fitted 1-channel encoder passed 2-channel arrays on to the model
    enc = ImageEncoder(image_config(tmp_path / "x.npz", channels=1).inputs[0])
    pixels = np.zeros((2, 2, 8, 8), dtype=np.uint8)
    with pytest.raises(DataError, match=r"array, column 'image': expected images with 1 "
                                        r"channels; got shape \[2, 2, 8, 8\]"):
        enc.parse(pixels, Table({"image": pixels}, "array"))


def test_flattened_square_images_are_accepted(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (20, 36)).astype(np.uint8)
    ds = build(image_config(_npz(tmp_path, pixels)))
    assert tuple(ds.train.inputs["image"].shape[1:]) == (1, 6, 6)


def test_image_files_become_nchw_and_match_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    root = tmp_path / "folder"
    pixels: dict[str, np.ndarray] = {}
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            rgb = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
            path = root / c / f"{i}.png"
            Image.fromarray(rgb).save(path)
            pixels[str(path)] = rgb
    ds = build(image_config(root, size=[6, 7]))
    enc = ds.schema.images[0]
    assert enc.channels == 3 and enc.size == (6, 7)
    assert tuple(ds.train.inputs["image"].shape[1:]) == (3, 6, 7)
    # the same pictures given as arrays encode to the same tensors
    paths = np.array(sorted(pixels), dtype=object)
    from_files = encode_rows(ds.schema, Table({"image": paths}, "files"), targets=False)[0]
    arrays = np.stack([pixels[p] for p in paths])
    from_arrays = encode_rows(ds.schema, Table({"image": arrays}, "arrays"), targets=False)[0]
    assert torch.equal(from_files.inputs["image"], from_arrays.inputs["image"])


def test_grey_files_are_resized_to_the_configured_size(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    ds = build(image_config(root, size=[4, 4], channels=1))
    assert tuple(ds.train.inputs["image"].shape[1:]) == (1, 4, 4)


# ----------------------------------------------------------------------------- splits


def _skewed(tmp_path: Path, n: int = 100) -> Path:
    """Row i has x = i; 80 % of rows are class a, 20 % class b."""
    rows = [f"{i},{'b' if i % 5 == 0 else 'a'}" for i in range(n)]
    return write_csv(tmp_path / "skewed.csv", "x,y", rows)


def _xs(ds: Dataset, split: str) -> list[int]:
    data = getattr(ds, split)
    return [int(v) for v in data.inputs["numeric"][:, 0].tolist()] if data is not None else []


def test_stratified_split_keeps_class_shares(tmp_path: Path) -> None:
    ds = build(config(_skewed(tmp_path), [{"name": "x", "type": "numeric",
                                           "normalize": "none"}],
                      split={"test": 0.2, "validation": 0.2}))
    sizes = {s: len(_xs(ds, s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 60, "validation": 20, "test": 20}
    for s in ("train", "validation", "test"):
        b_share = np.mean([x % 5 == 0 for x in _xs(ds, s)])
        assert b_share == pytest.approx(0.2), s
    every = sorted(_xs(ds, "train") + _xs(ds, "validation") + _xs(ds, "test"))
    assert every == list(range(100))  # disjoint, and nothing lost


def test_split_is_seeded(tmp_path: Path) -> None:
    p = _skewed(tmp_path)
    inputs = [{"name": "x", "type": "numeric", "normalize": "none"}]
    a, b = build(config(p, inputs)), build(config(p, inputs))
    c = build(config(p, inputs, split={"seed": 7}))
    assert _xs(a, "test") == _xs(b, "test")
    assert _xs(a, "test") != _xs(c, "test")


def test_stratify_false_gives_a_plain_random_split(tmp_path: Path) -> None:
    # regression: split.stratify was ignored; every split was stratified
    inputs = [{"name": "x", "type": "numeric", "normalize": "none"}]
    ds = build(config(_skewed(tmp_path), inputs,
                      split={"stratify": False, "test": 0.2, "validation": 0.0}))
    _, held = train_test_split(np.arange(100), test_size=0.2, random_state=0)
    assert _xs(ds, "test") == sorted(held.tolist())
    _, held = train_test_split(np.arange(100), test_size=0.2, random_state=0,
                               stratify=np.array(["b" if i % 5 == 0 else "a"
                                                  for i in range(100)]))
    assert _xs(ds, "test") != sorted(held.tolist())


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".gif", ".tiff", ".webp"])
def test_every_image_suffix_reads(tmp_path: Path, suffix: str) -> None:
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((6, 6), 50 * i, np.uint8)).save(root / c / f"{i}{suffix}")
    ds = build(image_config(root, channels=1))  # GIF and WebP would store these as colour
    assert tuple(ds.train.inputs["image"].shape[1:]) == (1, 6, 6)
