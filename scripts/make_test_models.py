#!/usr/bin/env python3
"""Generates the two tiny Hugging Face-style ONNX exports that pulse-nlp's tests load, so the
loader's Hugging Face path (config.json id2label, one `logits` output) is tested on models the
project makes itself:

- tiny-roberta-sentiment: RobertaForSequenceClassification with a byte-level BPE tokenizer
  (no token_type_ids input), labels negative/neutral/positive;
- tiny-bert-ner: BertForTokenClassification with a WordPiece tokenizer, CoNLL-style labels
  (O, B-PER, I-PER, B-LOC, I-LOC, B-MISC, I-MISC).

Both are trained for a few seconds on generated sentences until they get them right; the
tests check that behaviour through the Rust loader. Seeded; run through scripts/train
--test-models. Output: crates/pulse-nlp/tests/models/.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

THINGS = ["cake", "rain", "movie", "phone", "game", "coffee", "train", "song", "city", "team"]
FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
LAST = ["smith", "jones", "brown", "garcia", "miller", "davis"]
PLACES = [["paris"], ["berlin"], ["new", "york"], ["tokyo"], ["san", "francisco"], ["lima"]]


def sentiment_corpus(rng: random.Random):
    rows = []
    for thing in THINGS:
        for template, label in (
            ("i love the {}", 2),
            ("what a great {} today", 2),
            ("i hate the {}", 0),
            ("the {} is awful", 0),
            ("the {} is here", 1),
            ("there is a {} on the table", 1),
        ):
            rows.append((template.format(thing), label))
    rng.shuffle(rows)
    return rows


def ner_corpus(rng: random.Random):
    rows = []
    for _ in range(400):
        first, last, place = rng.choice(FIRST), rng.choice(LAST), rng.choice(PLACES)
        words = [first, last, "went", "to", *place, "yesterday"]
        tags = ["B-PER", "I-PER", "O", "O", "B-LOC"] + ["I-LOC"] * (len(place) - 1) + ["O"]
        if rng.random() < 0.5:
            words = ["yesterday", *place, "welcomed", first, last]
            tags = ["O", "B-LOC"] + ["I-LOC"] * (len(place) - 1) + ["O", "B-PER", "I-PER"]
        rows.append((words, tags))
    return rows


def bpe_tokenizer(texts):
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), trim_offsets=True
    )
    return tokenizer


def wordpiece_tokenizer(texts):
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    return tokenizer


def pad(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def train(model, batches, steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        inputs, labels = batches[step % len(batches)]
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


def export(model, dummy: dict, names: list[str], out: Path, token_level: bool):
    out.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["logits"] = {0: "batch", 1: "tokens"} if token_level else {0: "batch"}

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).logits

    torch.onnx.export(
        Logits(model),
        tuple(dummy[n] for n in names),
        str(out / "model.onnx"),
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=18,
        dynamo=False,
    )
    model.config.save_pretrained(str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from transformers import BertConfig, BertForTokenClassification, RobertaConfig, RobertaForSequenceClassification

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    # --- sentiment: RoBERTa-style, byte-level BPE, no segment ids ---
    rows = sentiment_corpus(rng)
    tokenizer = bpe_tokenizer([t for t, _ in rows])
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    config = RobertaConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=34,
        pad_token_id=tokenizer.token_to_id("<pad>"), bos_token_id=0, eos_token_id=2,
        type_vocab_size=1, id2label=labels, label2id={v: k for k, v in labels.items()},
        architectures=["RobertaForSequenceClassification"], _name_or_path="tiny-roberta-sentiment",
    )
    model = RobertaForSequenceClassification(config)
    encoded = [tokenizer.encode(t).ids for t, _ in rows]
    batches = []
    for i in range(0, len(rows), 12):
        ids, mask = pad(encoded[i : i + 12], config.pad_token_id)
        batches.append(({"input_ids": ids, "attention_mask": mask}, torch.tensor([l for _, l in rows[i : i + 12]])))
    loss = train(model, batches, 300)
    ids, mask = pad(encoded, config.pad_token_id)
    with torch.no_grad():
        right = (model(input_ids=ids, attention_mask=mask).logits.argmax(-1) == torch.tensor([l for _, l in rows])).float().mean()
    print(f"tiny-roberta-sentiment: loss {loss:.4f}, training accuracy {right:.3f}")
    out = args.out / "tiny-roberta-sentiment"
    export(model, {"input_ids": ids[:2], "attention_mask": mask[:2]}, ["input_ids", "attention_mask"], out, False)
    tokenizer.save(str(out / "tokenizer.json"))

    # --- entities: BERT-style, WordPiece, CoNLL labels ---
    rows = ner_corpus(rng)
    tokenizer = wordpiece_tokenizer([" ".join(w) for w, _ in rows])
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)},
        architectures=["BertForTokenClassification"], _name_or_path="tiny-bert-ner",
    )
    model = BertForTokenClassification(config)
    samples = []
    for words, word_tags in rows:
        encoding = tokenizer.encode(words, is_pretokenized=True)
        labels, previous = [], None
        for word in encoding.word_ids:
            labels.append(-100 if word is None or word == previous else tags.index(word_tags[word]))
            previous = word
        samples.append((encoding.ids, labels))
    batches = []
    for i in range(0, len(samples), 16):
        part = samples[i : i + 16]
        ids, mask = pad([s for s, _ in part], 0)
        target = torch.full(ids.shape, -100, dtype=torch.long)
        for row, (_, labels) in enumerate(part):
            target[row, : len(labels)] = torch.tensor(labels)
        batches.append(({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, target))
    loss = train(model, batches, 300)
    print(f"tiny-bert-ner: loss {loss:.4f}")
    out = args.out / "tiny-bert-ner"
    first = batches[0][0]
    export(model, {k: v[:2] for k, v in first.items()}, ["input_ids", "attention_mask", "token_type_ids"], out, True)
    tokenizer.save(str(out / "tokenizer.json"))
    for folder in ("tiny-roberta-sentiment", "tiny-bert-ner"):
        config_path = args.out / folder / "config.json"
        config_json = json.loads(config_path.read_text())
        config_json.pop("transformers_version", None)  # keeps the file stable across versions
        config_path.write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
