"""Entity spans from BIO tags, and exact-span precision / recall / F1.

A tag vocabulary is BIO when every tag is ``O`` or ``B-type`` / ``I-type``. A span starts
at a ``B-`` tag and takes the ``I-`` tags of its type that follow; an ``I-`` tag with no
open span of its type starts one (the lenient reading most scorers use, so a model that
misses only the ``B`` still gets the span's extent)::

    tokens  book  a  flight  to  new     york    friday
    tags    O     O  O       O   B-city  I-city  B-date
    spans   (city, 4, 6), (date, 6, 7)              # token ranges [start, end)

Scores count a predicted span as right only when its type, start and end all equal a true
span's (the CoNLL rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Span = tuple[str, int, int]  # entity type, first token, one past the last token


def is_bio(vocab: Iterable[str]) -> bool:
    """Whether every tag is ``O``, ``B-x`` or ``I-x`` (and at least one is not ``O``)."""
    tags = list(vocab)
    return any(t != "O" for t in tags) and all(
        t == "O" or (t[:2] in ("B-", "I-") and len(t) > 2) for t in tags)


def spans(tags: Sequence[str]) -> list[Span]:
    """The entity spans of one tag sequence, in order."""
    out: list[Span] = []
    kind, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):  # a final O closes the last span
        inside = tag.startswith("I-") and tag[2:] == kind
        if kind is not None and not inside:
            out.append((kind, start, i))
            kind = None
        if tag.startswith("B-") or (tag.startswith("I-") and not inside):
            kind, start = tag[2:], i
    return out


def span_scores(true: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]
                ) -> dict[str, float | int]:
    """Exact-span precision, recall and F1 over rows of tag sequences (micro average)."""
    hit = n_true = n_pred = 0
    for t, p in zip(true, pred, strict=True):
        st, sp = set(spans(t)), set(spans(p))
        hit, n_true, n_pred = hit + len(st & sp), n_true + len(st), n_pred + len(sp)
    precision = hit / n_pred if n_pred else 0.0
    recall = hit / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"span_precision": precision, "span_recall": recall, "span_f1": f1,
            "spans": n_true, "predicted_spans": n_pred}


def span_texts(text: str, offsets: Sequence[tuple[int, int]], tags: Sequence[str]
               ) -> list[dict[str, object]]:
    """The spans of one text as ``{"type", "text", "start", "end"}``: ``offsets`` are the
    character ranges of its tokens, and ``text[start:end]`` is the span as written."""
    out: list[dict[str, object]] = []
    for kind, a, b in spans(tags[: len(offsets)]):
        start, end = offsets[a][0], offsets[b - 1][1]
        out.append({"type": kind, "text": text[start:end], "start": start, "end": end})
    return out
