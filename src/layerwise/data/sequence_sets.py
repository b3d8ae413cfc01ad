"""Catalogue data sets of series and tagged tokens (registered in data/catalogue.py).

``co2-monthly``: the Mauna Loa CO2 series that statsmodels ships (``sm.datasets.co2``),
weekly from March 1958 to December 2001 with 59 missing weeks, as monthly means. A month's
value is the mean of the weekly readings it has; the five months with no reading at all
(1958-06, 1958-10, 1964-02 to 1964-04) stay empty (NaN): a timeseries input reading this
set says ``missing: interpolate`` to fill them linearly in time. ``weeks`` counts the
readings behind each month.

``pos-grammar``: part-of-speech tagged English sentences, generated deterministically from
a small grammar (universal tags DET, ADJ, NOUN, PROPN, PRON, VERB, AUX, ADV, ADP, CCONJ,
NUM, PUNCT). Many words are ambiguous ("the duck" / "they duck", "a light book" / "they
light fires", "like" as a verb or a preposition), and names come from a pool of rare
words, so a tagger must read context: the most frequent tag of each word is a real
baseline, not an upper bound.
"""

from __future__ import annotations

import random

import numpy as np

from layerwise.data.table import Table
from layerwise.errors import MissingDependencyError


def co2_monthly() -> dict[str, Table]:
    try:
        import statsmodels.api as sm
    except ImportError:
        raise MissingDependencyError("data set 'co2-monthly' needs the package statsmodels: "
                                     "pip install statsmodels (or pip install "
                                     "'layerwise[data]')") from None
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()  # NaN weeks are skipped; an empty month is NaN
    weeks = weekly.resample("MS").count()
    return {"all": Table({"month": np.array([d.strftime("%Y-%m-%d") for d in monthly.index],
                                            dtype=object),
                          "co2": monthly.to_numpy(dtype=np.float64),
                          "weeks": weeks.to_numpy(dtype=np.int64)}, "catalogue:co2-monthly")}


# ---------------------------------------------------------------------------- pos-grammar

POS_SENTENCES = 6000
_W = {
    "DET": "the a this that every some".split(),
    "ADJ": "big small old new red light fine back quiet happy green fast".split(),
    "NOUN": ("duck book watch saw fish plant light park train play can dog house river "
             "letter garden city table bird child market song road").split(),
    "PLURAL": ("ducks books watches fish plants lights parks trains dogs houses letters "
               "birds children songs roads").split(),
    "PRON": "they we you i".split(),
    "PRON3": "she he it".split(),
    "VERB": ("duck book watch saw fish plant light park train play like see love find "
             "carry paint visit").split(),
    "VERB3": ("ducks books watches saws fishes plants lights parks trains plays likes sees "
              "loves finds carries paints visits").split(),
    "AUX": "can will might must should".split(),
    "ADV": "quickly often back slowly never today".split(),
    "ADP": "in on near with like behind under".split(),
    "CCONJ": "and but or".split(),
    "NUM": "two three four five seven ten".split(),
}
_SYL = "ba be bo da de di ka ko la li lo ma mi mo na ni no ra re ri sa so ta te to va vi".split()


def _names(rng: random.Random, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(_SYL) for _ in range(rng.choice((2, 3)))).capitalize())
    return sorted(names)


def _np(rng: random.Random, names: list[str], plural: bool = False) -> list[tuple[str, str]]:
    r = rng.random()
    if r < 0.12 and not plural:
        return [(rng.choice(names), "PROPN")]
    if r < 0.22:
        return [(rng.choice(_W["NUM"]), "NUM"), (rng.choice(_W["PLURAL"]), "NOUN")]
    out = [(rng.choice(_W["DET"]), "DET")]
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        out.append((rng.choice(_W["ADJ"]), "ADJ"))
    out.append((rng.choice(_W["NOUN"]), "NOUN"))
    if rng.random() < 0.2:
        out += [(rng.choice(_W["ADP"]), "ADP")] + _np(rng, names)
    return out


def _clause(rng: random.Random, names: list[str]) -> list[tuple[str, str]]:
    r = rng.random()
    if r < 0.35:  # plural pronoun subject: bare verb
        subj, verb = [(rng.choice(_W["PRON"]), "PRON")], (rng.choice(_W["VERB"]), "VERB")
    elif r < 0.55:
        subj, verb = [(rng.choice(_W["PRON3"]), "PRON")], (rng.choice(_W["VERB3"]), "VERB")
    else:
        subj, verb = _np(rng, names), (rng.choice(_W["VERB3"]), "VERB")
    out = list(subj)
    if rng.random() < 0.3:  # a modal: the verb stays bare
        out.append((rng.choice(_W["AUX"]), "AUX"))
        verb = (rng.choice(_W["VERB"]), "VERB")
    out.append(verb)
    tail = rng.random()
    if tail < 0.6:
        out += _np(rng, names)
    elif tail < 0.8:
        out += [(rng.choice(_W["ADP"]), "ADP")] + _np(rng, names)
    else:
        out.append((rng.choice(_W["ADV"]), "ADV"))
    if rng.random() < 0.25:
        out.append((rng.choice(_W["ADV"]), "ADV"))
    return out


def pos_grammar(n: int = POS_SENTENCES, seed: int = 0) -> dict[str, Table]:
    """``n`` tagged sentences: ``text`` (space-separated tokens) and ``tags`` (one each)."""
    rng = random.Random(seed)
    names = _names(rng, 400)
    texts, tags = [], []
    for _ in range(n):
        sent = _clause(rng, names)
        if rng.random() < 0.3:
            sent += [(",", "PUNCT"), (rng.choice(_W["CCONJ"]), "CCONJ")] + _clause(rng, names)
        sent.append((rng.choice((".", ".", "!", "?")), "PUNCT"))
        words = [w for w, _ in sent]
        words[0] = words[0][0].upper() + words[0][1:]
        texts.append(" ".join(words))
        tags.append(" ".join(t for _, t in sent))
    return {"all": Table({"text": np.array(texts, dtype=object),
                          "tags": np.array(tags, dtype=object)}, "catalogue:pos-grammar")}
