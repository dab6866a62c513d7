"""Parity fixtures for the Rust encoder, made with the reference implementation.

    python make_parity.py make OUT   # random tiny HF models + their logits on a padded batch
    python make_parity.py check DIR.. # Rust-saved models: each loads in transformers with no
                                      # missing/unexpected keys and gives DIR/expected logits

`make` writes, per case NAME, OUT/NAME/model/{config.json,model.safetensors} (saved by
transformers) and OUT/NAME/expected.safetensors with `input_ids`, `attention_mask` (i64,
the batch contains padding) and `logits` (fp32, eval mode). The parameters are re-drawn with a
larger spread than transformers' init so that the logits are far from zero and a wrong
operation cannot hide under the tolerance.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    BertConfig,
    BertForMaskedLM,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
)

VOCAB = 97
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    pad_token_id=0,
)

CASES = {
    # embedding_size < hidden_size: exercises electra.embeddings_project.
    "electra_mlm": (ElectraForMaskedLM, ElectraConfig(embedding_size=16, **COMMON)),
    # untied generator_lm_head.weight, tanh GELU in the encoder.
    "electra_mlm_untied": (
        ElectraForMaskedLM,
        ElectraConfig(embedding_size=24, tie_word_embeddings=False, hidden_act="gelu_new", **COMMON),
    ),
    "bert_mlm": (BertForMaskedLM, BertConfig(**COMMON)),
    "electra_disc": (ElectraForPreTraining, ElectraConfig(embedding_size=32, **COMMON)),
}


def batch():
    """Three sequences of 12 tokens, the last two padded (ids 0, mask 0) after 7 and 3 tokens."""
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1, VOCAB, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    for row, length in ((1, 7), (2, 3)):
        ids[row, length:] = 0
        mask[row, length:] = 0
    return ids, mask


def randomise(model):
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.3 * noise)


def make(out):
    ids, mask = batch()
    for name, (cls, cfg) in CASES.items():
        torch.manual_seed(0)
        model = cls(cfg)
        randomise(model)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        case = Path(out) / name
        model.save_pretrained(case / "model")
        save_file(
            {"input_ids": ids, "attention_mask": mask, "logits": logits.contiguous()},
            str(case / "expected.safetensors"),
        )
        print(f"{name}: logits {tuple(logits.shape)}, max |logit| {logits.abs().max():.3f}")


def check(case):
    case = Path(case)
    arch = AutoConfig.from_pretrained(case / "model").architectures[0]
    cls = {c.__name__: c for c in (ElectraForMaskedLM, BertForMaskedLM, ElectraForPreTraining)}[arch]
    model, info = cls.from_pretrained(case / "model", output_loading_info=True)
    bad = {k: v for k, v in info.items() if k != "error_msgs" and v}
    if bad or info.get("error_msgs"):
        sys.exit(f"{case}: transformers loading info {info}")
    expected = load_file(str(case / "expected.safetensors"))
    model.eval()
    with torch.no_grad():
        logits = model(
            input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]
        ).logits
    diff = (logits - expected["logits"]).abs().max().item()
    scale = expected["logits"].abs().max().item()
    print(f"{case.name}: {arch}, max |diff| {diff:.2e} (max |logit| {scale:.3f})")
    if diff > 1e-4:
        sys.exit(f"{case}: logits differ by {diff} (tolerance 1e-4)")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        for case in sys.argv[2:]:
            check(case)
