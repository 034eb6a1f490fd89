"""k-shot evaluation through seqio.Evaluator: demonstrations are other examples of the task's train split, read
through its own get_dataset; in token space (instance-level) for a plain SeqIO task, laid out as text for our
instruction tasks: task-level (the definition once, then the demonstrations, then the input) where the task gives
a definition, instance-level otherwise."""

import json

import numpy as np
import pytest

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

from optiml_jax.evaluation.seqio_eval import EvalConfigError, evaluate_mixture_or_task  # noqa: E402
from optiml_jax.evaluation.seqio_kshot import KShotConfigError, task_kshot_prompts  # noqa: E402
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
    kshot = task_kshot_prompts(tasks, 2, seed=0)
    assert (kshot.layout, kshot.placement) == ("tokens", "instance")
    sep = list(mini_vocab.encode(DEFAULT_SEPARATOR))
    train = [mini_vocab.encode(i) + mini_vocab.encode(t) for i, t in TRAIN]
    # two different train examples: inputs then targets, no </s>
    first, second = map(list, kshot.demonstrations)
    assert first in train and second in train and first != second
    prompt = [BOS_ID] + mini_vocab.encode("Copy: abc Answer:")
    assert kshot(0, prompt, room=1000) == [BOS_ID] + first + sep + second + sep + prompt[1:]
    # demonstrations are dropped from the end until the prompt fits; the example is never cut
    assert kshot(0, prompt, room=len(prompt) + len(first) + len(sep)) == [BOS_ID] + first + sep + prompt[1:]
    assert kshot(0, prompt, room=3) == prompt
    assert task_kshot_prompts(tasks, 2, seed=0).demonstrations == kshot.demonstrations  # deterministic per seed
    assert {task_kshot_prompts(tasks, 2, seed=s).demonstrations for s in range(6)} != {kshot.demonstrations}
    assert task_kshot_prompts(tasks, 0) is None


def test_kshot_scores_are_the_models_scores_with_the_demonstrations_in_front(tasks, tiny_model, tiny_config,
                                                                         tiny_params, mini_vocab, tmp_path):
    from optiml_jax.evaluation import SeqioEvalCallback

    lengths = {"inputs": 32, "targets": 8}
    evaluate_mixture_or_task(tiny_model, TASK, output_dir=tmp_path, step=3, shots=2, task_feature_lengths=lengths)
    got = list(SCORES)
    first, second = map(list, task_kshot_prompts(tasks, 2, seed=42).demonstrations)  # the default seed
    sep = mini_vocab.encode(DEFAULT_SEPARATOR)
    prompts = [[BOS_ID] + first + sep + second + sep + mini_vocab.encode(i) for i, _ in VALID]
    targets = [mini_vocab.encode(t) + [mini_vocab.eos_id] for _, t in VALID]
    expected = [row[0][0] for row in tiny_model.score_token_options(prompts, [[t] for t in targets])]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    lines = (tmp_path / "inference_eval_2shot" / f"{TASK}-metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 3

    # the trainer's callback: the same k-shot scores, in MODEL_DIR/inference_eval_2shot; 0-shot differs
    run = tmp_path / "run"
    SeqioEvalCallback(TASK, task_feature_lengths=lengths, max_new_tokens=4, batch_size=4, shots=2)(
        tiny_config, tiny_params, 4, run)
    np.testing.assert_allclose(SCORES, got, rtol=1e-5, atol=1e-5)
    assert (run / "inference_eval_2shot" / f"{TASK}-metrics.jsonl").is_file()
    assert not (run / "inference_eval").exists()
    SeqioEvalCallback(TASK, task_feature_lengths=lengths, max_new_tokens=4, batch_size=4)(
        tiny_config, tiny_params, 4, run)
    assert not np.allclose(SCORES, got, rtol=1e-3)  # the demonstrations mattered
    assert (run / "inference_eval" / f"{TASK}-metrics.jsonl").is_file()
    with pytest.raises(ValueError, match="shots must be >= 0"):
        SeqioEvalCallback(TASK, shots=-1)
    with pytest.raises(ValueError, match="demonstration_split='validation' is only read by a k-shot"):
        SeqioEvalCallback(TASK, demonstration_split="validation")  # set, but a 0-shot run would ignore it


# Our instruction tasks: inputs end with ":" so no delimiter is drawn, and every prompt below is written by hand.
DEFINITION = "Write the word that follows."
DEF_TRAIN = [{"instruction": DEFINITION, "input": f"Word w{i}:", "target": f"w{i + 1}"} for i in range(4)]
DEF_VALID = [{"instruction": DEFINITION, "input": "Word abc:", "target": "abd"},
             {"instruction": DEFINITION, "input": "Word xy:", "target": "xz"}]


@pytest.fixture()
def instruction_task(mini_vocab):
    from optiml_jax.tasks import registry
    from optiml_jax.tasks.metadata import TaskInfo

    made = []

    def make(name, instruction_type):
        info = TaskInfo(name, "niv2" if instruction_type == "task" else "promptsource", "c",
                        instruction_type=instruction_type, metric="exact_match")
        registry.register_instruction_task(info, {"train": lambda: DEF_TRAIN, "validation": lambda: DEF_VALID},
                                           mini_vocab, replace=True)
        made.append(name)
        return seqio.get_mixture_or_task(name)

    yield make
    for name in made:
        registry.unregister_task(name)


class _PromptSpy:
    """The tiny model, recording the prompts the Evaluator's predict_fn decodes."""

    def __init__(self, model):
        self._model, self.prompts = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate_token_batches(self, prompts, **kw):
        self.prompts += [list(p) for p in prompts]
        return self._model.generate_token_batches(prompts, **kw)


def _demo_text(demo, with_instruction):
    src = f"{demo['instruction']}\n\n{demo['input']}" if with_instruction else demo["input"]
    return f"{src} {demo['target']}"


@pytest.mark.parametrize("instruction_type", ["task", "instance"])
def test_instruction_task_demonstrations_are_laid_out_by_placement(instruction_task, instruction_type, tiny_model,
                                                                   mini_vocab, tmp_path):
    task = instruction_task(f"kshot_words_{instruction_type}", instruction_type)
    evaluator = seqio.Evaluator(task.name, feature_converter=seqio.PrefixLMFeatureConverter(pack=False),
                                eval_split="validation", logger_cls=())
    kshot = task_kshot_prompts(task, 2, seed=0, evaluated=evaluator.cached_task_datasets[task.name])
    assert (kshot.layout, kshot.placement) == ("text", instruction_type)
    d1, d2 = kshot.demonstrations
    assert d1 in [dict(r, id=f"{task.name}-train-{i}") for i, r in enumerate(DEF_TRAIN)] and d1 != d2
    sep = DEFAULT_SEPARATOR
    for index, ex in enumerate(DEF_VALID):
        if instruction_type == "task":  # the definition once, then the demonstrations, then the input
            text = f"{DEFINITION}{sep}{_demo_text(d1, False)}{sep}{_demo_text(d2, False)}{sep}{ex['input']}"
            one_shot = f"{DEFINITION}{sep}{_demo_text(d1, False)}{sep}{ex['input']}"
        else:  # every demonstration carries its own instruction
            text = f"{_demo_text(d1, True)}{sep}{_demo_text(d2, True)}{sep}{DEFINITION}\n\n{ex['input']}"
            one_shot = f"{_demo_text(d1, True)}{sep}{DEFINITION}\n\n{ex['input']}"
        zero_shot = [BOS_ID] + mini_vocab.encode(f"{DEFINITION}\n\n{ex['input']}")
        assert kshot(index, zero_shot, room=1000) == [BOS_ID] + mini_vocab.encode(text)
        # too long for both: the last demonstration goes first, the definition and the input are kept
        full = len(mini_vocab.encode(text)) + 1
        assert kshot(index, zero_shot, room=full - 1) == [BOS_ID] + mini_vocab.encode(one_shot)
        assert kshot(index, zero_shot, room=2) == zero_shot  # no demonstration left: the zero-shot prompt

    # end to end: the prompts the eval's predict_fn decodes are these k-shot prompts, the 0-shot ones the task's own
    spy = _PromptSpy(tiny_model)
    evaluate_mixture_or_task(spy, task.name, output_dir=tmp_path, step=1, shots=2, seed=0)
    assert sorted(spy.prompts) == sorted(kshot(i, [BOS_ID], room=1000) for i in range(len(DEF_VALID)))
    if instruction_type == "instance":
        return  # the 0-shot prompts are the same for both placements: checked once
    spy.prompts.clear()
    evaluate_mixture_or_task(spy, task.name, output_dir=tmp_path, step=1, seed=0)
    assert sorted(spy.prompts) == sorted([BOS_ID] + mini_vocab.encode(f"{DEFINITION}\n\n{ex['input']}")
                                         for ex in DEF_VALID)


def test_kshot_without_a_train_split_names_the_task(tasks, tiny_model, tmp_path):
    with pytest.raises(KShotConfigError, match=rf"{NO_TRAIN}.*'train' split"):
        evaluate_mixture_or_task(tiny_model, NO_TRAIN, output_dir=tmp_path, step=0, shots=1)


def test_seqio_shots_without_a_named_task_is_an_error_not_ignored(tmp_path):
    from optiml_jax.evaluation.entry_points import evaluate

    with pytest.raises(EvalConfigError, match=r"SEQIO_SHOTS = \(0, 5\) applies to .*MIXTURE_OR_TASK_NAME"):
        evaluate(str(tmp_path / "no_checkpoint"), str(tmp_path / "out"), seqio_shots=(0, 5))
    with pytest.raises(EvalConfigError, match="demonstration_split = 'validation' is only read by a k-shot"):
        evaluate(str(tmp_path / "no_checkpoint"), str(tmp_path / "out"), demonstration_split="validation",
                 mixture_or_task_name=TASK)

