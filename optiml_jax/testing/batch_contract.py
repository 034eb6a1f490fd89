"""`assert_batch_contract`: the packed training batch every stream must produce (docs/ARCHITECTURE.md, "Batch
contract"), checked feature by feature with messages that say which row and segment break it."""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from optiml_jax.vocabularies.special_ids import SpecialIds, opt_special_ids

FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights", "decoder_segment_ids",
            "decoder_positions")


def segments(batch: Mapping[str, np.ndarray], row: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(target ids, input ids, loss weights) of each packed example of `row`, in order."""
    seg = np.asarray(batch["decoder_segment_ids"][row])
    for s in range(1, int(seg.max(initial=0)) + 1):
        m = seg == s
        yield (np.asarray(batch["decoder_target_tokens"][row])[m], np.asarray(batch["decoder_input_tokens"][row])[m],
               np.asarray(batch["decoder_loss_weights"][row])[m])


def assert_batch_contract(batch: Mapping[str, np.ndarray], *, batch_size: int | None = None,
                          length: int | None = None, ends_with_eos: bool = True,
                          special_ids: SpecialIds | None = None) -> None:
    """Raises AssertionError unless `batch` is a packed decoder batch in the T5X feature convention with the ids of
    `special_ids` (the run's vocabulary's, `special_ids_of(vocab)`; default OPT's: bos = eos = </s>, pad <pad>):
    int32 tokens/segments/positions and float32 weights of one [batch, length] shape; segments numbered 1, 2, ...
    from the left of each row and contiguous, padding (segment 0) only at the end with token <pad> and weight 0;
    positions 0.. within each segment; inputs = targets shifted right within the segment, starting with the bos
    (a family without one: the example's first token, input only); label weights in [0, 1]; and (unless
    `ends_with_eos=False`) each segment's last target is the eos with weight 1.
    """
    ids = special_ids or opt_special_ids()
    missing = set(FEATURES) - set(batch)
    assert not missing, f"batch lacks features {sorted(missing)}"
    shape = np.shape(batch["decoder_target_tokens"])
    for k in FEATURES:
        v = np.asarray(batch[k])
        assert v.shape == shape and v.ndim == 2, f"{k}: shape {v.shape}, expected {shape} (2-D)"
        want = np.float32 if k == "decoder_loss_weights" else np.int32
        assert v.dtype == want, f"{k}: dtype {v.dtype}, expected {np.dtype(want)}"
    if batch_size is not None:
        assert shape[0] == batch_size, f"batch has {shape[0]} rows, expected {batch_size}"
    if length is not None:
        assert shape[1] == length, f"rows have length {shape[1]}, expected {length}"
    seg = np.asarray(batch["decoder_segment_ids"])
    w = np.asarray(batch["decoder_loss_weights"])
    pad = seg == 0
    assert (np.asarray(batch["decoder_target_tokens"])[pad] == ids.pad).all(), f"padding targets must be {ids.pad}"
    assert (np.asarray(batch["decoder_input_tokens"])[pad] == ids.pad).all(), f"padding inputs must be {ids.pad}"
    assert (w[pad] == 0).all(), "padding must have loss weight 0"
    assert ((w >= 0) & (w <= 1)).all(), "loss weights must lie in [0, 1]"
    for r in range(shape[0]):
        s = seg[r]
        n_real = int((s > 0).sum())
        assert (s[n_real:] == 0).all(), f"row {r}: padding (segment 0) inside the row, not only at its end"
        steps = np.diff(s[:n_real])
        assert ((steps == 0) | (steps == 1)).all() and (n_real == 0 or s[0] == 1), (
            f"row {r}: segment ids must count 1, 2, ... contiguously, got {s[:n_real].tolist()}")
        pos = np.asarray(batch["decoder_positions"][r])
        for k, (tgt, inp, wt) in enumerate(segments(batch, r), 1):
            p = pos[s == k]
            assert (p == np.arange(len(p))).all(), f"row {r} segment {k}: positions {p.tolist()} do not restart at 0"
            if ids.bos is not None:
                assert inp[0] == ids.bos, f"row {r} segment {k}: first input token {inp[0]}, expected bos {ids.bos}"
            assert (inp[1:] == tgt[:-1]).all(), f"row {r} segment {k}: inputs are not the targets shifted right"
            if ends_with_eos:
                assert tgt[-1] == ids.eos_id and wt[-1] == 1, (
                    f"row {r} segment {k}: must end with eos {ids.eos_id} as a label")
