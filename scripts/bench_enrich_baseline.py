#!/usr/bin/env python3
"""The plain Python baseline of scripts/bench-enrich: the same model and posts through
onnxruntime, tokenizers and yake from PyPI, the way a Python service would do it: per call of
256 posts, YAKE keywords per post, one tokenizer call, batches of 32 by length on one session
with 2 intra-op threads, softmax/sigmoid decoding and entity spans per word. Prints posts/s of
the full enrichment and of the bare session runs (tokenized beforehand), best of 3 rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yake
from pulse_casing import case_class
from tokenizers import Tokenizer

CALL = 256
BATCH = 32


def posts(folder: Path, wanted: int) -> list[str]:
    out: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        out.extend(line for line in text.splitlines() if line.strip())
        if len(out) >= wanted:
            break
    if len(out) < wanted:
        raise SystemExit(f"{folder} holds {len(out)} posts, {wanted} wanted")
    return out[:wanted]


class Model:
    def __init__(self, folder: Path):
        self.manifest = json.loads((folder / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.manifest["max_tokens"])
        self.tasks = {t["task"]: t for t in self.manifest["tasks"]}

    def feed(self, texts, encodings):
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), np.int64)
        mask = np.zeros_like(ids)
        cases = np.zeros_like(ids)
        for row, (text, e) in enumerate(zip(texts, encodings)):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
            if "case_ids" in self.inputs:
                cases[row, : len(e.ids)] = [
                    0 if special else case_class(text[a:b])
                    for (a, b), special in zip(e.offsets, e.special_tokens_mask)
                ]
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        if "case_ids" in self.inputs:
            feed["case_ids"] = cases
        return feed

    def run(self, texts, encodings):
        return self.session.run(None, self.feed(texts, encodings))


def batches_by_length(encodings) -> list[list[int]]:
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    return [order[i : i + BATCH] for i in range(0, len(order), BATCH)]


def softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def enrich(model: Model, extractor, texts: list[str]) -> list[dict]:
    out = [{"keywords": extractor.extract_keywords(t)} for t in texts]
    encodings = model.tokenizer.encode_batch(texts)
    names = [o.name for o in model.session.get_outputs()]
    tags = model.tasks["entities"]["labels"]
    emotions = model.tasks["emotion"]["labels"]
    for batch in batches_by_length(encodings):
        outputs = dict(zip(names, model.run([texts[i] for i in batch], [encodings[i] for i in batch])))
        sentiment = softmax(outputs["sentiment_logits"])
        emotion = 1 / (1 + np.exp(-outputs["emotion_logits"]))
        entity = softmax(outputs["entity_logits"])
        for row, i in enumerate(batch):
            post = out[i]
            post["sentiment"] = sentiment[row].tolist()
            post["emotions"] = dict(zip(emotions, emotion[row].tolist()))
            spans, previous = [], None
            e = encodings[i]
            for t, word in enumerate(e.word_ids):
                if word is None or word == previous:
                    continue
                previous = word
                tag = tags[int(entity[row, t].argmax())]
                if tag.startswith("B-") or (tag.startswith("I-") and not spans):
                    spans.append([e.offsets[t][0], e.offsets[t][1], tag[2:]])
                elif tag.startswith("I-"):
                    spans[-1][1] = e.offsets[t][1]
            post["entities"] = [(texts[i][a:b], kind) for a, b, kind in spans]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--stream", type=Path, required=True)
    parser.add_argument("--posts", type=int, default=10_000)
    args = parser.parse_args()
    texts = posts(args.stream, args.posts)
    model = Model(args.model)
    extractor = yake.KeywordExtractor(lan="en", n=2, top=8)
    encoded = [
        (call, model.tokenizer.encode_batch(call))
        for call in (texts[i : i + CALL] for i in range(0, len(texts), CALL))
    ]
    enrich(model, extractor, texts[:CALL])  # warm-up
    best_full = best_bare = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for call, encodings in encoded:
            for batch in batches_by_length(encodings):
                model.run([call[i] for i in batch], [encodings[i] for i in batch])
        best_bare = min(best_bare, time.perf_counter() - began)
        began = time.perf_counter()
        for call, _ in encoded:
            enrich(model, extractor, call)
        best_full = min(best_full, time.perf_counter() - began)
    print(
        json.dumps(
            {
                "posts": len(texts),
                "bare_posts_per_second": round(len(texts) / best_bare, 1),
                "full_posts_per_second": round(len(texts) / best_full, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
