"""Reader + formatting (+ tokenization + packing) throughput on the real NIv2 task files and CoT TSVs.

    python perf/readers.py [--data ../shared/data] [--repeats 3]
Compares against the 125m CPU training step's consumption (~89 tokens/s for the PyTorch peer,
environment_notes.md). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optiml_jax.sources import cot_reader
from optiml_jax.sources import niv2_reader  # noqa: E402
from optiml_jax.tasks.metadata import TaskInfo  # noqa: E402

PEER_TRAIN_TOKENS_PER_S = 89.0


def read_all(data: pathlib.Path) -> list[tuple[TaskInfo, list[dict]]]:
    out = []
    for t in niv2_reader.read_niv2_tasks(data / "niv2" / "tasks"):
        out.append((TaskInfo(t.name, "niv2", "x", instruction_type="task"), list(t.examples())))
    for name, p in cot_reader.cot_files(data / "flan" / "cot_data").items():
        out.append((TaskInfo(name, "reasoning", "Reasoning", instruction_type="task"), list(cot_reader.read_cot_tsv(p, name))))
    return out


def timed(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pack-length", type=int, default=2048)
    a = ap.parse_args(argv)
    data = pathlib.Path(a.data)
    rows = []
    secs, tasks = timed(lambda: read_all(data), a.repeats)
    n_ex = sum(len(e) for _, e in tasks)
    ws = sum(len(x["instruction"].split()) + len(x["input"].split()) + len(x["target"].split())
             for _, e in tasks for x in e)
    rows.append(("read (NIv2 5 files + CoT 7 TSVs)", n_ex, ws, secs))

    from optiml_jax.tasks.formatting import draw_delimiter, layout
    def fmt():
        return [(t, layout(t, x, delimiter=draw_delimiter(t.name, x["id"]))) for t, e in tasks for x in e]
    secs, formatted = timed(fmt, a.repeats)
    ws_f = sum(len("".join(p.text for p in pieces).split()) for _, pieces in formatted)
    rows.append(("format (0-shot layout + delimiter)", n_ex, ws_f, secs))

    tok_rows = []
    try:
        from optiml_jax.data.packing import efficiency, pack
        from optiml_jax.data.tokenization import tokenize_pieces
        from optiml_jax.vocabularies.opt_vocabulary import OPTVocabulary
        vocab = OPTVocabulary(data / "opt_tokenizer")
        pieces = [p for _, p in formatted]
        secs, toks = timed(lambda: tokenize_pieces(vocab, pieces), 1)
        n_tok = int(sum(len(i) for i, _ in toks))
        tok_rows.append(("tokenize (OPT BPE)", n_ex, n_tok, secs))
        fits = [(i[-a.pack_length:], w[-a.pack_length:]) for i, w in toks]
        num_rows = int(np.ceil(n_tok / a.pack_length * 1.1)) + 1
        secs, (batch, _) = timed(lambda: pack(fits, num_rows, a.pack_length), 1)
        tok_rows.append((f"pack ({a.pack_length}-token rows, efficiency {efficiency(batch):.3f})", n_ex, n_tok, secs))
    except Exception as e:  # noqa: BLE001 - report what is missing rather than failing the text benchmark
        print(f"tokenize/pack skipped: {type(e).__name__}: {e}")

    print("| stage | examples | tokens | seconds | examples/s | tokens/s | x 125m CPU step (89 tok/s) |")
    print("|---|---|---|---|---|---|---|")
    for name, n, tok, s in rows + tok_rows:
        unit = "whitespace" if (name, n, tok, s) in rows else "OPT"
        print(f"| {name} | {n} | {tok} {unit} | {s:.3f} | {n / s:,.0f} | {tok / s:,.0f} | {tok / s / PEER_TRAIN_TOKENS_PER_S:,.0f}x |")


if __name__ == "__main__":
    main()
