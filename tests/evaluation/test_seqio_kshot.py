"""k-shot evaluation of a plain SeqIO task through seqio.Evaluator: demonstrations are other examples of the task's
train split, read through its own get_dataset, in token space, before each evaluated example."""

import json

import numpy as np
import pytest

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

from optiml_jax.evaluation.seqio_eval import EvalConfigError, evaluate_mixture_or_task, task_demonstrations  # noqa: E402
from optiml_jax.evaluation.seqio_glue import split_prompt_and_target  # noqa: E402
from optiml_jax.tasks.formatting import DEFAULT_SEPARATOR  # noqa: E402
from optiml_jax.vocabularies.special_tokens import BOS_ID  # noqa: E402

TASK, NO_TRAIN = "kshot_copy_task", "kshot_copy_task_without_train"
TRAIN = [(f"Copy: w{i} Answer:", f" w{i}") for i in range(6)]
VALID = [("Copy: abc Answer:", " abc"), ("Copy: xy Answer:", " xy")]
SCORES: list[float] = []


def _record_scores(targets, scores):
    SCORES[:] = [float(s) for s in scores]
    return {"mean_score": float(np.mean(scores))}


def _parse(ds):
    def split(line):
        inputs, targets = tf.strings.split(line, "\t")[0], tf.strings.split(line, "\t")[1]
        return {"inputs": inputs, "targets": targets}

    return ds.map(split)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, mini_vocab):
    d = tmp_path_factory.mktemp("kshot")
    for name, rows in (("train", TRAIN), ("validation", VALID)):
        (d / f"{name}.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in rows))
    features = {k: seqio.Feature(mini_vocab, add_eos=(k == "targets")) for k in ("inputs", "targets")}
    preprocessors = [_parse, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim]
    for name, splits in ((TASK, ("train", "validation")), (NO_TRAIN, ("validation",))):
        if name in seqio.TaskRegistry.names():
            seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(
            name, source=seqio.TextLineDataSource({s: str(d / f"{s}.tsv") for s in splits}),
            preprocessors=preprocessors, output_features=features, metric_fns=[_record_scores])
    yield seqio.get_mixture_or_task(TASK)
    for name in (TASK, NO_TRAIN):
        seqio.TaskRegistry.remove(name)


def test_demonstrations_are_train_examples_in_token_space(tasks, mini_vocab):
    demos = task_demonstrations(tasks, 2, seed=0)
    sep = list(mini_vocab.encode(DEFAULT_SEPARATOR))
    train = [mini_vocab.encode(i) + mini_vocab.encode(t) for i, t in TRAIN]
    # two train examples (inputs then targets, no </s>), each followed by the separator
    first = next(r for r in train if demos[:len(r)] == r)
    rest = demos[len(first) + len(sep):]
    assert demos[len(first):len(first) + len(sep)] == sep and rest[-len(sep):] == sep
    assert rest[:-len(sep)] in train and rest[:-len(sep)] != first
    assert task_demonstrations(tasks, 2, seed=0) == demos  # deterministic per seed
    assert {tuple(task_demonstrations(tasks, 2, seed=s)) for s in range(6)} != {tuple(demos)}
    assert task_demonstrations(tasks, 0) == []


def test_kshot_scores_are_the_models_scores_with_the_demonstrations_in_front(tasks, tiny_model, mini_vocab, tmp_path):
    results = evaluate_mixture_or_task(tiny_model, TASK, output_dir=tmp_path, step=3, shots=2,
                                       task_feature_lengths={"inputs": 32, "targets": 8})
    got = list(SCORES)
    demos = task_demonstrations(tasks, 2, seed=42)  # evaluate_mixture_or_task's default seed
    prompts = [[BOS_ID] + demos + mini_vocab.encode(i) for i, _ in VALID]
    targets = [mini_vocab.encode(t) + [mini_vocab.eos_id] for _, t in VALID]
    expected = [row[0][0] for row in tiny_model.score_token_options(prompts, [[t] for t in targets])]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    zero = evaluate_mixture_or_task(tiny_model, TASK, output_dir=tmp_path, step=3,
                                    task_feature_lengths={"inputs": 32, "targets": 8})
    assert zero[TASK]["mean_score"] != pytest.approx(results[TASK]["mean_score"])  # the demonstrations mattered
    lines = (tmp_path / "inference_eval_2shot" / f"{TASK}-metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 3
    assert (tmp_path / "inference_eval" / f"{TASK}-metrics.jsonl").is_file()


def test_kshot_without_a_train_split_names_the_task(tasks, tiny_model, tmp_path):
    with pytest.raises(EvalConfigError, match=rf"{NO_TRAIN}.*'train' split"):
        evaluate_mixture_or_task(tiny_model, NO_TRAIN, output_dir=tmp_path, step=0, shots=1)


def test_seqio_shots_without_a_named_task_is_an_error_not_ignored(tmp_path):
    from optiml_jax.evaluation.entry_points import evaluate

    with pytest.raises(EvalConfigError, match=r"SEQIO_SHOTS = \(0, 5\) applies to .*MIXTURE_OR_TASK_NAME"):
        evaluate(str(tmp_path / "no_checkpoint"), str(tmp_path / "out"), seqio_shots=(0, 5))
