"""The embedded mini-benchmark: shape (collections, categories, levels), determinism, held-out hygiene, assets."""

import filecmp
import json

import pytest

from optiml_jax.tasks.mini_bench import SPLIT, TASKS, example_counts, generate_task
from optiml_jax.tasks.mini_bench.families import FAMILIES

INSTRUCTION_COLLECTIONS = {"niv2", "promptsource", "flan", "crossfit", "exmix", "t5", "unifiedskg", "reasoning"}


def test_shape_like_opt_iml_bench():
    instr = [t for t in TASKS if not t.full_sequence_loss]
    assert {t.collection for t in instr} == INSTRUCTION_COLLECTIONS
    assert len(instr) >= 40 and len({t.category for t in instr}) >= 12
    assert {t.instruction_type for t in instr} == {"task", "instance", "keyword"}
    levels = {lvl for _, lvl in SPLIT.evaluation_tasks(TASKS)}
    assert levels == {"fully_held_out", "partially_supervised", "fully_supervised"}
    trainable = SPLIT.trainable(TASKS)
    assert not {t.category for t in trainable} & SPLIT.fully_held_out_categories
    assert not {t.name for t in trainable} & SPLIT.held_out_tasks
    for name in SPLIT.held_out_tasks:  # partially supervised: the category is seen through other tasks
        cat = next(t.category for t in TASKS if t.name == name)
        assert any(t.category == cat for t in trainable), name
    assert {t.name for t in TASKS} >= SPLIT.supervised_eval_tasks | SPLIT.validation_tasks


def test_generation_is_deterministic_and_instances_are_held_out():
    for t in TASKS:
        splits = generate_task(t.name)
        assert splits == generate_task.__wrapped__(t.name)  # regenerated from scratch, identical
        train_inputs = {(e["instruction"], e["input"], e["target"]) for e in splits["train"]}
        for s in ("validation", "test"):
            assert splits[s], (t.name, s)
            if not t.full_sequence_loss:
                assert not any((e["instruction"], e["input"], e["target"]) in train_inputs for e in splits[s]), t.name
        assert len({e["id"] for s in splits.values() for e in s}) == sum(len(s) for s in splits.values())


def _normalized(ex) -> str:
    text = " ".join(ex["input"].lower().split())
    return text or " ".join(ex["target"].lower().split())  # pre-training text and chats have no input


def test_every_tasks_splits_are_disjoint_by_normalized_input():
    for t in TASKS:
        splits = generate_task(t.name)
        keys = {s: [_normalized(e) for e in exs] for s, exs in splits.items()}
        for s, k in keys.items():
            assert len(set(k)) == len(k), (t.name, s, "an instance repeated within the split")
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
            shared = set(keys[a]) & set(keys[b])
            assert not shared, (t.name, a, b, sorted(shared)[:2])
    # a chat's shorter version is a prefix of its longer one: no pair of speakers is on two sides
    chats = generate_task("mini_bench_dialogue_chat")
    pairs = {s: {e["target"].split("\n")[0].split(":")[0] + "/" + e["target"].split("\n")[1].split(":")[0]
                 for e in exs} for s, exs in chats.items()}
    assert not pairs["train"] & (pairs["validation"] | pairs["test"]) and not pairs["validation"] & pairs["test"]


def test_supervised_eval_tasks_share_no_13gram_between_train_and_held_out_instances():
    from optiml_jax.tasks.leakage import find_leaks

    for name in sorted(SPLIT.supervised_eval_tasks):  # trained on and evaluated: `tasks leakage` compares these
        splits = generate_task(name)
        report = find_leaks({name: splits["train"]}, {name: splits["validation"] + splits["test"]}, threshold=0.0)
        assert report["pairs"] == [], (name, report["pairs"])


def test_classification_tasks_have_options_containing_the_target():
    classification = [t for t in TASKS if t.metric == "accuracy"]
    assert len(classification) >= 10
    for t in classification:
        for e in generate_task(t.name)["test"]:
            assert len(e["options"]) >= 2 and e["target"] in e["options"], t.name
    generation = [t for t in TASKS if t.metric != "accuracy" and not t.full_sequence_loss]
    assert len(generation) >= 20 and all(not e["options"] for t in generation for e in generate_task(t.name)["test"])


def test_tasks_are_what_they_say():
    add = generate_task("mini_bench_niv2_add")["train"][:50]
    for e in add:
        a, b = e["input"].removeprefix("Input: What is ").removesuffix("?").split(" + ")
        assert int(e["target"]) == int(a) + int(b)
    for e in generate_task("mini_bench_t5_reverse")["train"][:50]:
        assert e["target"] == e["input"].removeprefix("reverse: ")[::-1]
    reasoning = generate_task("mini_bench_reasoning_subtract")["train"][0]
    assert "step by step" in reasoning["instruction"] and reasoning["target"].endswith(".")
    assert set(FAMILIES) >= {"antonym", "sentiment", "sort_numbers", "count_words", "fact_town"}


def test_counts_file_matches_generation(mini_bench_assets):
    counts_file, _ = mini_bench_assets
    assert json.loads(counts_file.read_text()) == example_counts()


@pytest.mark.slow
def test_tokenizer_regeneration_is_identical(tmp_path, mini_bench_assets):
    from optiml_jax.tasks.mini_bench.tokenizer import build_tokenizer

    _, shipped = mini_bench_assets
    out = build_tokenizer(tmp_path / "tok")
    for f in ("vocab.json", "merges.txt"):
        assert filecmp.cmp(out / f, shipped / f, shallow=False), f


def test_shipped_vocabulary_is_small_and_complete(mini_bench_assets):
    from optiml_jax.vocabularies import OPTVocabulary

    _, shipped = mini_bench_assets
    vocab = OPTVocabulary(shipped)
    assert vocab.vocab_size == 2048 and (vocab.pad_id, vocab.eos_id) == (1, 2)
    text = generate_task("mini_bench_flan_sentiment")["test"][0]["input"]
    assert vocab.decode(vocab.encode(text)) == text
    assert len(vocab.encode(text)) < len(text) / 2.5  # the BPE learned the mini-benchmark's words
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 100_000
