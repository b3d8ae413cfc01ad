"""Config models of sequence to sequence: the ``sequence`` output (generated text with its
own tokenizer) and the ``seq2seq`` family (encoder-decoder transformer, models/seq2seq.py),
and the check that ties them together."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Family, _Strict, check_heads


class SequenceOutput(_Strict):
    """Generated text: a target text with its own tokenizer fitted on the training split,
    learned with teacher forcing, decoded greedily or with beam search."""

    type: Literal["sequence"]
    name: str = Field(min_length=1, description="the column of target texts")
    tokenizer: Literal["char", "word", "bpe"] = "char"
    max_length: int = Field(64, gt=0, description="most tokens generated; a longer training "
                            "target is truncated (and then teaches no end of sequence)")
    vocab_size: int = Field(20000, ge=4, description="largest target vocabulary")
    min_frequency: int = Field(1, ge=1, description="rarer target tokens map to <unk>")
    lowercase: bool = Field(False, description="lowercase the targets before tokenizing")
    beams: int = Field(1, ge=1, description="beam width of predict and of the evaluation "
                       "(1: greedy)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    loss_weight: float = Field(1.0, gt=0.0)
    # read by the shared text encoder; targets are never missing
    missing: Literal["error"] = "error"
    fill_value: str = ""


class Seq2SeqConfig(_Family):
    """Encoder-decoder transformer: one text input → one sequence output."""

    input_kinds: ClassVar[tuple[str, ...]] = ("text",)
    output_kinds: ClassVar[tuple[str, ...]] = ("sequence",)

    family: Literal["seq2seq"]
    d_model: int = Field(128, gt=0, description="width of tokens (a multiple of heads)")
    heads: int = Field(4, gt=0)
    encoder_layers: int = Field(2, gt=0)
    decoder_layers: int = Field(2, gt=0)
    mlp_ratio: int = Field(4, gt=0, description="hidden width of each block's MLP / d_model")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    positions: Literal["learned", "sinusoidal", "rotary"] = Field(
        "learned", description="in the encoder and in the decoder's self-attention")
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu"] = "gelu"

    @model_validator(mode="after")
    def _heads_divide(self) -> Seq2SeqConfig:
        check_heads(self.d_model, self.heads, self.positions)
        return self


def check_seq2seq(cfg: Any) -> None:
    """One text input, one sequence output, and a family that predicts sequences (seq2seq):
    all three or none."""
    seqs = [o for o in cfg.outputs if o.type == "sequence"]
    generates = cfg.model.accepts_output("sequence")
    if not seqs and not generates:
        return
    if len(seqs) != 1 or len(cfg.outputs) != 1 or not generates or len(cfg.inputs) != 1 \
            or cfg.inputs[0].type not in cfg.model.input_kinds:
        raise ValueError("a sequence-to-sequence model reads one text input and predicts one "
                         "sequence output, with model.family: seq2seq; got inputs "
                         f"{[f.type for f in cfg.inputs]}, outputs "
                         f"{[o.type for o in cfg.outputs]}, family {cfg.model.family}")
