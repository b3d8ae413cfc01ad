"""Chatbot understanding: the generated data set and its held-out templates, BIO spans, the
joint intent + entities + sentiment model with a context input, hand-off thresholds,
and ``layerwise chat`` over a pipe and over a running server."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from layerwise.data import bio, chat_sets

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CHAT: dict[str, Any] = {
    "name": "tiny_chat", "seed": 0,
    "data": {"dataset": "chat-intents", "limit": 400},
    "inputs": [{"name": "text", "type": "text", "max_length": 32, "vocab_size": 800},
               {"name": "context", "type": "text", "max_length": 32, "vocab_size": 800}],
    "outputs": [{"name": "intent", "type": "category"},
                {"name": "entities", "type": "tags", "input": "text"},
                {"name": "sentiment", "type": "category", "loss_weight": 0.5}],
    "model": {"family": "rnn", "embedding_dim": 24, "hidden": 24, "bidirectional": True,
              "pooling": "max"},
    "train": {"epochs": 4, "batch_size": 32, "progress": "quiet",
              "optimizer": {"name": "adamw", "lr": 0.01}},
}


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import layerwise as lw

    out = tmp_path_factory.mktemp("chat") / "run"
    run = lw.train(copy.deepcopy(TINY_CHAT), output=out)
    return Path(run.model_dir)


# ------------------------------------------------------------------------------- the data
def test_test_templates_never_appear_in_training() -> None:
    lists = [*chat_sets.INTENTS.values(), chat_sets.FOLLOW_UPS,
             chat_sets.OUT_OF_SCOPE_TEMPLATES, *chat_sets.SENTIMENT.values()]
    for train, val, test in lists:
        seen = set(train) - {""}
        assert not seen & set(test) and not seen & set(val) and not set(val) & set(test) - {""}
    parts = chat_sets.chat_intents(train=300, validation=100, test=100, seed=3)
    for name, table in parts.items():
        templates = set(table.columns["template"])
        assert all(t.split("/")[1] == name for t in templates)  # each part its own frames
        for text, tags in zip(table.columns["text"], table.columns["entities"], strict=True):
            assert len(chat_sets._tokens(text)) == len(tags.split())
    train_frames = set(parts["train"].columns["template"])
    assert not train_frames & set(parts["test"].columns["template"])
    assert {"in", "out"} == set(parts["test"].columns["scope"])
    again = chat_sets.chat_intents(train=300, validation=100, test=100, seed=3)
    assert list(again["test"].columns["text"]) == list(parts["test"].columns["text"])


def test_a_template_that_glues_a_slot_to_a_word_is_refused(monkeypatch: Any) -> None:
    from layerwise.errors import DataError

    bad = {"get_weather": (["weather in {city}s"], ["x"], ["y"])}
    monkeypatch.setattr(chat_sets, "INTENTS", bad)
    monkeypatch.setattr(chat_sets, "FOLLOW_SLOTS", {"get_weather": ["city"]})
    with pytest.raises(DataError, match="template 'get_weather/train/0'"):
        chat_sets.chat_intents(train=20, validation=0, test=0, oos_share=0, follow_share=0)


# -------------------------------------------------------------------------------- BIO spans
def test_bio_spans_round_trip_and_score_exact_matches() -> None:
    tags = ["O", "B-city", "I-city", "O", "B-date", "B-date", "I-date", "I-time"]
    spans = bio.spans(tags)
    assert spans == [("city", 1, 3), ("date", 4, 5), ("date", 5, 7), ("time", 7, 8)]
    rebuilt = ["O"] * len(tags)
    for kind, a, b in spans:
        rebuilt[a: b] = [f"B-{kind}"] + [f"I-{kind}"] * (b - a - 1)
    assert rebuilt == [*tags[:7], "B-time"]  # a stray I- opens its own span
    text = "fly to New York on march 3rd"
    offsets = [(0, 3), (4, 6), (7, 10), (11, 15), (16, 18), (19, 24), (25, 26), (26, 28)]
    got = bio.span_texts(text, offsets, ["O", "O", "B-city", "I-city", "O", "B-date",
                                         "I-date", "I-date"])
    assert got == [{"type": "city", "text": "New York", "start": 7, "end": 15},
                   {"type": "date", "text": "march 3rd", "start": 19, "end": 28}]
    scores = bio.span_scores([["B-city", "I-city", "O"]], [["B-city", "O", "O"]])
    assert scores["span_f1"] == 0.0 and scores["spans"] == 1  # a short span is wrong
    assert bio.span_scores([tags], [tags])["span_f1"] == 1.0
    assert bio.is_bio(["O", "B-x", "I-x"]) and not bio.is_bio(["NOUN", "VERB"])


# ----------------------------------------------------------------------- the joint model
def test_joint_model_predicts_intent_entities_and_sentiment(chat_model: Path) -> None:
    import layerwise as lw

    m = lw.load(chat_model)
    rows = m.predict([{"text": "Book a flight to New York friday", "context": ""},
                      {"text": "what about tokyo", "context": "weather in paris today"}])
    for r in rows:
        assert r["intent"] in r["intent_probabilities"]
        assert r["sentiment"] in ("positive", "neutral", "negative")
        ent = r["entities"]
        assert len(ent["tokens"]) == len(ent["tags"]) == len(ent["probabilities"])
        assert isinstance(ent["spans"], list)
        assert "route" not in r  # no hand-off settings fitted yet
    assert rows[0]["entities"]["tokens"][4:6] == ["New", "York"]  # as written
    assert set(m.model.heads) == {"intent", "entities", "sentiment"}
    metrics = json.loads((chat_model.parent / "metrics.json").read_text())
    test = metrics["test"]
    assert test["intent"]["accuracy"] > 0.2  # 10 even classes: chance is 0.1
    assert {"span_f1", "span_precision", "span_recall"} <= set(test["entities"])


def test_spans_are_decoded_back_to_the_text_as_written(chat_model: Path) -> None:
    import numpy as np
    import torch

    import layerwise as lw

    enc = next(e for e in lw.load(chat_model).schema.outputs if e.kind == "tags")
    text = "Fly to New York on  March 3rd, thanks"
    want = ["O", "O", "B-city", "I-city", "O", "B-date", "I-date", "O", "O"]
    logits = torch.full((1, 32, len(enc.vocab)), -5.0)
    for i, tag in enumerate(want):
        logits[0, i, enc.vocab.index(tag)] = 5.0
    got = enc.decode(logits, np.array([text], dtype=object))[0]
    assert got["tags"] == want
    assert [(s["type"], s["text"]) for s in got["spans"]] == [("city", "New York"),
                                                              ("date", "March 3rd")]
    assert all(text[s["start"]: s["end"]] == s["text"] for s in got["spans"])


def test_a_tags_output_beside_others_needs_one_tags_output_and_no_series() -> None:
    from layerwise.config import parse
    from layerwise.errors import ConfigError

    cfg = copy.deepcopy(TINY_CHAT)
    cfg["outputs"].append({"name": "more", "type": "tags", "input": "context"})
    with pytest.raises(ConfigError, match="at most one tags output"):
        parse(cfg)


# --------------------------------------------------------------------------------- hand-off
class _Enc:
    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind


OUTS = [_Enc("intent", "category"), _Enc("entities", "tags"), _Enc("sentiment", "category")]


def _pred(intent: str = "book_flight", p: float = 0.9, tag_p: float = 0.9) -> dict[str, Any]:
    return {"intent": intent, "intent_probability": p, "sentiment": "neutral",
            "sentiment_probability": 0.4,
            "entities": {"tokens": ["to", "paris"], "tags": ["O", "B-city"],
                         "probabilities": [0.99, tag_p]}}


def test_handoff_rule_uses_per_output_thresholds_and_the_out_of_scope_label() -> None:
    from layerwise.inference import abstain

    settings = {"thresholds": {"intent": 0.6, "entities": 0.5},
                "out_of_scope": {"output": "intent", "label": "out_of_scope"}}
    assert abstain.handoff_reason(_pred(), OUTS, settings) is None  # sentiment has none
    assert "out of scope" in abstain.handoff_reason(_pred("out_of_scope"), OUTS, settings)
    assert abstain.handoff_reason(_pred(p=0.55), OUTS, settings).startswith(
        "intent confidence 0.550 is below its threshold 0.6")
    assert abstain.handoff_reason(_pred(tag_p=0.3), OUTS, settings).startswith("entities")
    rows = abstain.route([_pred(), _pred(p=0.1)], OUTS, {"handoff": settings})
    assert [r["route"] for r in rows] == ["bot", "human"] and "reason" in rows[1]
    assert "route" not in abstain.route([_pred()], OUTS, {})[0]
    # one number (the server's setting) still reads the least confident classifying output
    assert abstain.reason(_pred(), OUTS, 0.5) is not None  # sentiment 0.4
    from layerwise.serving import abstain as served

    assert served.reason is abstain.reason  # one copy of the rule


def test_fitted_thresholds_are_stored_and_route_predictions(chat_model: Path,
                                                            tmp_path: Path) -> None:
    import shutil

    import layerwise as lw
    from layerwise.evaluation.handoff import fit_handoff

    model = tmp_path / "run" / "model"
    shutil.copytree(chat_model.parent, model.parent)
    rep = fit_handoff(model, accuracy=0.9, outputs=["intent", "entities"])
    stored = json.loads((model / "layerwise.json").read_text())["handoff"]
    assert set(stored["thresholds"]) == {"intent", "entities"}
    assert stored["thresholds"] == rep["thresholds"]
    assert stored["out_of_scope"] == {"output": "intent", "label": "out_of_scope"}
    val = rep["validation"]
    assert 0 <= val["in_scope_handed_off"] <= 1 and val["out_of_scope_rows"] > 0
    rows = lw.load(model).predict([{"text": "tell me a joke", "context": ""},
                                   {"text": "set an alarm for 7 am", "context": ""}])
    for r in rows:
        assert r["route"] in ("bot", "human") and (r["route"] == "bot") == ("reason" not in r)
        assert "intent" in r  # the understanding stays beside the route
    # rows that the rule answers reach the target accuracy more often than all rows do
    if val.get("intent_answered_accuracy") is not None and val["handed_off"] < 1:
        metrics = json.loads((model.parent / "metrics.json").read_text())
        assert val["intent_answered_accuracy"] >= metrics["validation"]["intent"]["accuracy"]


def test_a_budget_caps_the_share_of_in_scope_rows_handed_off(chat_model: Path,
                                                             tmp_path: Path) -> None:
    import shutil

    from layerwise.evaluation.handoff import fit_handoff

    model = tmp_path / "run" / "model"
    shutil.copytree(chat_model.parent, model.parent)
    none = fit_handoff(model, max_in_scope=0.0)  # only rows predicted out of scope
    assert set(none["thresholds"].values()) == {0.0} and "accuracy" not in none
    floor = none["validation"]["in_scope_handed_off"]
    budget = min(0.9, floor + 0.2)
    rep = fit_handoff(model, max_in_scope=budget)
    got = rep["validation"]["in_scope_handed_off"]
    assert floor < got <= budget + 1e-9  # the thresholds spend the budget, not more
    assert rep["validation"]["out_of_scope_handed_off"] >= none["validation"][
        "out_of_scope_handed_off"]


def test_handoff_refuses_unknown_outputs(chat_model: Path) -> None:
    from layerwise.errors import ConfigError
    from layerwise.evaluation.handoff import fit_handoff

    with pytest.raises(ConfigError, match=r"--outputs: \['mood'\]"):
        fit_handoff(chat_model, outputs=["mood"])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        fit_handoff(chat_model, accuracy=1.5)
    with pytest.raises(ConfigError, match="max-in-scope needs an out-of-scope class"):
        fit_handoff(chat_model, max_in_scope=0.1, out_of_scope=None)


# ------------------------------------------------------------------------------ chat loop
def _cli(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layerwise", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_chat_reads_a_pipe_keeps_the_context_and_stops_at_quit(
        chat_model: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    import layerwise as lw
    from layerwise.cli import main

    said = ["book a flight to paris friday", "", "what about tokyo", "quit", "never read"]
    got = _cli("chat", str(chat_model), "--json", stdin="\n".join(said) + "\n")  # a real pipe
    assert got.returncode == 0, got.stderr
    lines = [json.loads(x) for x in got.stdout.splitlines()]
    assert [x["message"] for x in lines] == ["book a flight to paris friday",
                                             "what about tokyo"]
    # the second message was read with the first as its context
    m = lw.load(chat_model)
    want = m.predict([{"text": "what about tokyo", "context": said[0]}])[0]
    assert lines[1]["intent"] == want["intent"]
    assert lines[1]["intent_probability"] == round(want["intent_probability"], 4)
    assert lines[1]["route"] == "bot" and isinstance(lines[1]["entities"], list)
    monkeypatch.setattr(sys, "stdin", io.StringIO("set an alarm for 7 am\n"))  # EOF ends it
    assert main(["chat", str(chat_model)]) == 0
    out = capsys.readouterr().out
    assert "> set an alarm for 7 am" in out and "intent:" in out and "route: bot" in out


def test_chat_talks_to_a_running_server(chat_model: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    import layerwise as lw
    from layerwise.cli import main
    from layerwise.errors import ConfigError
    from layerwise.inference.chat import Conversation
    from tests.serving_helpers import running

    local = Conversation.local(lw.load(chat_model))
    with running({"chat": str(chat_model)}, tmp_path, token="s3cret") as (client, _):
        url = str(client.base_url)
        remote = Conversation.remote(url, "chat", token="s3cret")
        for message in ("order a pizza", "make it sushi"):  # the context travels too
            assert remote.say(message) == local.say(message)
        monkeypatch.setattr(sys, "stdin", io.StringIO("check my savings balance\n"))
        assert main(["chat", "chat", "--url", url, "--token", "s3cret", "--json"]) == 0
        fresh = lw.load(chat_model).predict([{"text": "check my savings balance",
                                              "context": ""}])[0]  # a new conversation
        assert json.loads(capsys.readouterr().out)["intent"] == fresh["intent"]
        only = Conversation.remote(url, None, token="s3cret")  # the server's only model
        assert (only.message, only.context) == ("text", "context")  # from GET /v1/models
        assert only.say("order a pizza") == Conversation.local(
            lw.load(chat_model)).say("order a pizza")
        with pytest.raises(ConfigError, match="serves \\['chat'\\]"):
            Conversation.remote(url, "other", token="s3cret")
        with pytest.raises(ConfigError, match="token"):
            Conversation.remote(url, "chat", token="wrong")
        monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
        assert main(["chat", "chat", "--url", url]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --url") and "token" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="cannot reach the server"):
        Conversation.remote(url, "chat", timeout=2)


def test_predict_and_evaluate_through_the_cli(chat_model: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from layerwise.cli import main

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "play some jazz", "context": ""}) + "\n")
    assert main(["predict", str(chat_model), str(rows)]) == 0
    pred = json.loads(capsys.readouterr().out.splitlines()[0])
    assert {"intent", "entities", "sentiment"} <= set(pred)
    assert "spans" in pred["entities"]
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(chat_model), "--basic", "--no-speed", "-o", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert 0 <= metrics["entities"]["span_f1"] <= 1 and "accuracy" in metrics["intent"]
    saved = json.loads((chat_model.parent / "metrics.json").read_text())["test"]
    assert metrics["intent"]["accuracy"] == pytest.approx(saved["intent"]["accuracy"])


def test_word_dropout_hides_real_tokens_in_training_only() -> None:
    import torch

    from layerwise.config import RNNConfig
    from layerwise.data.text import UNK_ID
    from layerwise.models.rnn import SequenceEncoder

    enc = SequenceEncoder(RNNConfig(family="rnn", word_dropout=0.5, hidden=4,
                                    embedding_dim=4), vocab_size=50, pad_id=0)
    ids = torch.randint(2, 50, (64, 10))
    ids[:, 7:] = 0  # padding
    mask = ids != 0
    torch.manual_seed(0)
    hidden = enc.train()._words(ids, mask)
    dropped = (hidden == UNK_ID) & (ids != UNK_ID)
    assert 0.35 < dropped[mask].float().mean() < 0.65  # about half the real tokens
    assert (hidden[~mask] == 0).all()  # padding stays padding
    assert torch.equal(enc.eval()._words(ids, mask), ids)  # predictions see every word


@pytest.mark.parametrize("family", [{"family": "rnn", "bidirectional": True, "hidden": 5,
                                     "embedding_dim": 6, "pooling": "last"},
                                    {"family": "transformer", "d_model": 8, "heads": 2,
                                     "layers": 1}])
def test_joint_backbones_feed_token_states_to_tags_and_pooled_features_to_the_rest(
        family: dict[str, Any]) -> None:
    import torch
    from pydantic import TypeAdapter

    from layerwise.config import CategoryOutput, ModelConfig, TagsOutput
    from layerwise.models import build_model

    desc = {"numeric_dim": 0, "category_sizes": [], "category_dims": [], "images": {},
            "texts": {"text": {"vocab_size": 30, "max_length": 10, "pad_id": 0},
                      "context": {"vocab_size": 30, "max_length": 10, "pad_id": 0}},
            "tagged": ["text"],
            "outputs": {"intent": ("category", 4), "entities": ("tags", 5)}}
    outs = [CategoryOutput(name="intent", type="category"),
            TagsOutput(name="entities", type="tags", input="text")]
    torch.manual_seed(0)
    m = build_model(TypeAdapter(ModelConfig).validate_python(family), outs, desc).eval()
    lengths = torch.tensor([6, 3])
    ids = torch.randint(2, 30, (2, 10))
    ids[torch.arange(10)[None, :] >= lengths[:, None]] = 0
    x = {"text": {"ids": ids, "lengths": lengths},
         "context": {"ids": ids.flip(0), "lengths": lengths.flip(0)}}
    y = m(x)
    assert y["intent"].shape == (2, 4) and y["entities"].shape == (2, 10, 5)
    # the context reaches the intent, never the tags of the message
    x2 = {**x, "context": {"ids": torch.randint(2, 30, (2, 10)),
                           "lengths": torch.tensor([10, 10])}}
    y2 = m(x2)
    assert not torch.allclose(y["intent"], y2["intent"])
    assert torch.allclose(y["entities"], y2["entities"])
    loss = m.loss(y, {"intent": torch.tensor([1, 2]),
                      "entities": torch.zeros(2, 10, dtype=torch.long)})
    loss.backward()
    ctx = [p for n, p in m.named_parameters() if n.startswith("backbone.encoders.context.")]
    assert ctx and all(p.grad is not None for p in ctx)  # the context encoder learns


def test_conversation_reads_the_roles_from_the_model_and_keeps_turns() -> None:
    from layerwise.errors import ConfigError
    from layerwise.inference.chat import Conversation, render

    seen: list[dict[str, Any]] = []

    def predict(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.extend(rows)
        return [{"label": "x", "label_probability": 0.5, "route": "human", "reason": "low"}]

    tags = {"name": "ents", "type": "tags", "input": "msg"}
    talk = Conversation(predict, [{"name": "prev", "type": "text"},
                                  {"name": "msg", "type": "text"}],
                        [{"name": "label", "type": "category"}, tags], turns=2)
    for m in ("a", "b", "c"):
        said = talk.say(m)
    assert seen == [{"msg": "a", "prev": ""}, {"msg": "b", "prev": "a"},
                    {"msg": "c", "prev": "a b"}]
    assert said == {"label": "x", "label_probability": 0.5, "route": "human", "reason": "low"}
    assert "route: human (low)" in render(said, talk.outputs)
    alone = Conversation(predict, [{"name": "text", "type": "text"}],
                         [{"name": "label", "type": "category"}])
    alone.say("hi")
    assert seen[-1] == {"text": "hi"}  # no context input: the message alone
    with pytest.raises(ConfigError, match="text input"):
        Conversation(predict, [{"name": "x", "type": "numeric"}], [])


def test_a_served_hand_off_reaches_the_review_queue_with_what_was_understood(
        chat_model: Path, tmp_path: Path) -> None:
    import shutil

    from layerwise import artifact as art
    from layerwise.serving.records import read_lines
    from tests.serving_helpers import running

    model = tmp_path / "chat" / "model"
    shutil.copytree(chat_model.parent, model.parent)
    art.update_meta(model, {"handoff": {"thresholds": {"intent": 1.0}}})  # every row
    with running({"chat": str(model)}, tmp_path) as (client, _):
        got = client.post("/v1/models/chat/predict",
                          json={"rows": [{"text": "play some jazz", "context": ""}]})
    assert got.status_code == 200
    row = got.json()["predictions"][0]
    assert row["route"] == "human" and row["abstain"] is True and row["review_id"]
    assert row["reason"].startswith("intent confidence") and "entities" in row
    queued = read_lines(tmp_path / "state" / "review.jsonl")
    assert [q["id"] for q in queued] == [row["review_id"]]
