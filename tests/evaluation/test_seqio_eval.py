"""`python -m optiml_jax.eval --gin.MIXTURE_OR_TASK_NAME=<task>` and the trainer's SeqioEvalCallback run a SeqIO
task's own metric_fns (predict, predict_with_aux, score) through seqio.Evaluator and write T5X's outputs.

The task is a user's module written like seqio's README (`readme_seqio_tasks.py` beside this file, imported by
name through MIXTURE_OR_TASK_MODULE); its metric functions record what seqio handed them.
"""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE = "readme_seqio_tasks"
TASK, LM_TASK, MIXTURE = "optiml_readme_copy", "optiml_readme_copy_lm", "optiml_readme_mixture"
ROWS = [("Copy: abc Answer:", " abc"), ("Copy: xy Answer:", " xy"), ("Say yes:", " yes"),
        ("Reverse the word: cat Answer:", " tac")]
LENGTHS = {"inputs": 32, "targets": 8}
MAX_NEW = 4


def _clear_gin():
    """The CLIs leave their locked gin config behind: later direct calls of configurables must not see it, and
    later imports must be able to register configurables (`clear_config` unlocks; `unlock_config()` would re-lock)."""
    import gin

    gin.clear_config()


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    _clear_gin()


def _write_task_dir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "validation.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in ROWS))
    return path


def _forget_module():
    """So that the next import (the CLI's) runs the module's registrations again."""
    sys.modules.pop(MODULE, None)
    for name in (TASK, LM_TASK):
        if name in seqio.TaskRegistry.names():
            seqio.TaskRegistry.remove(name)
    if MIXTURE in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(MIXTURE)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    path = _write_task_dir(tmp_path_factory.mktemp("readme_task"))
    old = os.environ.get("OPTIML_README_TASK_DIR")
    os.environ["OPTIML_README_TASK_DIR"] = str(path)
    _forget_module()
    yield path
    _forget_module()
    if old is None:
        os.environ.pop("OPTIML_README_TASK_DIR", None)
    else:
        os.environ["OPTIML_README_TASK_DIR"] = old


def _calls(task_dir) -> list[dict]:
    f = task_dir / "calls.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.is_file() else []


def _metrics_lines(log_dir, task):
    return [json.loads(line) for line in (log_dir / f"{task}-metrics.jsonl").read_text().splitlines()]


def _tensorboard_scalars(task_log_dir) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    files = sorted(task_log_dir.glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file in {task_log_dir}"
    for f in files:
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
    return out


@pytest.fixture(scope="module")
def cli_run(task_dir, hf_export, tmp_path_factory):
    """The eval CLI on the tiny random checkpoint, naming the task and the module that registers it."""
    from optiml_jax.cli import eval as eval_cli

    out = tmp_path_factory.mktemp("eval_out")
    _forget_module()  # the CLI's MIXTURE_OR_TASK_MODULE import must register the task
    rc = eval_cli.main(["--gin_file=runs/eval.gin", f"--gin.CHECKPOINT_PATH={hf_export}",
                        f"--gin.EVAL_OUTPUT_DIR={out}", f"--gin.MIXTURE_OR_TASK_MODULE={MODULE}",
                        f"--gin.MIXTURE_OR_TASK_NAME={TASK}", f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}",
                        f"--gin.MAX_NEW_TOKENS={MAX_NEW}", "--gin.EVAL_BATCH_SIZE=4"])
    _clear_gin()
    calls = _calls(task_dir)
    (task_dir / "calls.jsonl").unlink(missing_ok=True)
    return rc, out, calls


def test_readme_task_preprocesses_as_seqio_says(task_dir, mini_vocab):
    importlib.import_module(MODULE)
    ds = seqio.get_mixture_or_task(TASK).get_dataset(LENGTHS, split="validation", shuffle=False)
    seqio.test_utils.assert_dataset(ds, [
        {"inputs_pretokenized": i, "inputs": mini_vocab.encode(i), "targets_pretokenized": t,
         "targets": mini_vocab.encode(t) + [mini_vocab.eos_id]} for i, t in ROWS])


def test_eval_cli_runs_the_tasks_metric_fns(cli_run, task_dir, tiny_model, mini_vocab):
    rc, out, calls = cli_run
    assert rc == 0
    assert TASK in seqio.TaskRegistry.names()  # MIXTURE_OR_TASK_MODULE was imported
    # The task was evaluated, not the mini-benchmark (SUITES unset -> suites only without a task).
    assert not (out / "results.json").exists() and not (out / "report.md").exists()

    by_metric = {c["metric"]: c for c in calls}
    assert sorted(c["metric"] for c in calls) == ["exact_match", "mean_decode_score", "mean_log_likelihood"]
    targets = [t for _, t in ROWS]
    assert all(c["targets"] == targets for c in calls)  # the TSV's targets, in order

    # What the metric functions received is what the model produces for these prompts.
    prompts = [[mini_vocab.bos_id] + mini_vocab.encode(i) for i, _ in ROWS]
    expected_preds = [mini_vocab.decode(c) for c in tiny_model.generate_token_batches(prompts, max_new_tokens=MAX_NEW)]
    assert by_metric["exact_match"]["predictions"] == expected_preds
    assert by_metric["mean_decode_score"]["predictions"] == expected_preds
    expected_scores = [row[0][0] for row in tiny_model.score_token_options(
        prompts, [[mini_vocab.encode(t) + [mini_vocab.eos_id]] for t in targets])]
    np.testing.assert_allclose(by_metric["mean_log_likelihood"]["scores"], expected_scores, rtol=1e-4)
    assert all(s <= 0 for s in by_metric["mean_decode_score"]["scores"])

    # T5X-style outputs: per-task metrics JSONL, per-example inferences JSONL, TensorBoard scalars.
    log_dir = out / "inference_eval"
    (line,) = _metrics_lines(log_dir, TASK)
    assert line["step"] == 0  # a Hugging Face checkpoint has no training step
    preds = by_metric["exact_match"]["predictions"]
    assert line["exact_match"] == pytest.approx(100.0 * np.mean([p == t for p, t in zip(preds, targets)]))
    assert line["mean_log_likelihood"] == pytest.approx(np.mean(by_metric["mean_log_likelihood"]["scores"]))
    assert line["mean_decode_score"] == pytest.approx(np.mean(by_metric["mean_decode_score"]["scores"]))
    rows = [json.loads(r) for r in (log_dir / f"{TASK}-000000.jsonl").read_text().splitlines()]
    assert [r["target"] for r in rows] == targets and [r["prediction"] for r in rows] == preds
    assert [r["score"] for r in rows] == pytest.approx(by_metric["mean_log_likelihood"]["scores"])
    assert [r["aux_scores"] for r in rows] == pytest.approx(by_metric["mean_decode_score"]["scores"])
    scalars = _tensorboard_scalars(log_dir / TASK)
    for name in ("exact_match", "mean_log_likelihood", "mean_decode_score"):
        assert scalars[f"eval/{name}"] == {0: pytest.approx(line[name], rel=1e-5, abs=1e-6)}


def test_trainer_callback_gives_the_clis_metrics(cli_run, task_dir, tiny_config, tiny_params, tmp_path):
    from optiml_jax.evaluation import CompositeCallback, SeqioEvalCallback

    _, out, _ = cli_run
    (cli_line,) = _metrics_lines(out / "inference_eval", TASK)
    seen_steps = []
    callback = CompositeCallback([
        SeqioEvalCallback(MIXTURE, task_feature_lengths=LENGTHS, max_new_tokens=MAX_NEW, batch_size=4),
        lambda config, params, step, model_dir: seen_steps.append(step) or {"ok": step}])
    model_dir = tmp_path / "run"
    for step in (3, 5):  # the trainer's calls: same signature, Evaluator and its datasets reused
        results = callback(tiny_config, tiny_params, step, model_dir)
    assert seen_steps == [3, 5] and results["<lambda>"] == {"ok": 5}
    metrics = results["SeqioEvalCallback"][TASK]  # the mixture evaluates as its task
    assert metrics["exact_match"] == cli_line["exact_match"]
    for name in ("mean_log_likelihood", "mean_decode_score"):
        assert metrics[name] == pytest.approx(cli_line[name], rel=1e-4, abs=1e-5)
    lines = _metrics_lines(model_dir / "inference_eval", TASK)
    assert [l["step"] for l in lines] == [3, 5]
    assert (model_dir / "inference_eval" / f"{TASK}-000005.jsonl").is_file()
    assert set(_tensorboard_scalars(model_dir / "inference_eval" / TASK)["eval/exact_match"]) == {3, 5}
    assert sorted(c["metric"] for c in _calls(task_dir)) == sorted(
        ["exact_match", "mean_decode_score", "mean_log_likelihood"] * 2)


def test_targets_only_task_uses_the_decoder_converter(task_dir):
    from optiml_jax.evaluation.seqio_eval import eval_tasks, feature_converter_for

    importlib.import_module(MODULE)
    assert isinstance(feature_converter_for(eval_tasks(LM_TASK)), seqio.DecoderFeatureConverter)
    assert isinstance(feature_converter_for(eval_tasks(MIXTURE)), seqio.PrefixLMFeatureConverter)
    assert [t.name for t in eval_tasks(MIXTURE)] == [TASK]


def test_suites_and_task_choice():
    from optiml_jax.evaluation.entry_points import chosen_suites
    from optiml_jax.evaluation.seqio_eval import EvalConfigError

    assert chosen_suites(None, None) == ("mini_bench",)
    assert chosen_suites(None, "my_task") == ()
    assert chosen_suites(["mini_bench", "mmlu"], "my_task") == ("mini_bench", "mmlu")  # both run
    with pytest.raises(EvalConfigError, match="nothing to evaluate"):
        chosen_suites([], None)


def test_eval_cli_names_what_is_wrong_with_the_task(task_dir, tmp_path, capsys):
    from optiml_jax.cli import eval as eval_cli

    base = ["--gin_file=runs/eval.gin", f"--gin.CHECKPOINT_PATH={tmp_path / 'never_loaded'}",
            f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'out'}"]
    assert eval_cli.main(base + ["--gin.MIXTURE_OR_TASK_NAME=no_such_task"]) == 2
    err = capsys.readouterr().err
    assert "no_such_task" in err and "MIXTURE_OR_TASK_MODULE" in err

    name = "optiml_eval_test_no_metrics"
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(
        lambda split, shuffle_files: tf.data.Dataset.from_tensors({"targets": "x"}), splits=["validation"]),
        output_features={})
    try:
        assert eval_cli.main(base + [f"--gin.MIXTURE_OR_TASK_NAME={name}"]) == 2
        assert "no metric_fns" in capsys.readouterr().err
        assert eval_cli.main(base + [f"--gin.MIXTURE_OR_TASK_NAME={name}", "--gin.EVAL_SPLIT=test"]) == 2
        assert "no 'test' split" in capsys.readouterr().err
    finally:
        seqio.TaskRegistry.remove(name)
    assert eval_cli.main(base + ["--gin.SUITES=[]"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_module_in_a_fresh_process_with_suites_too(hf_export, tmp_path):
    """`python -m optiml_jax.eval` as a user runs it: the task module on PYTHONPATH, SUITES and
    MIXTURE_OR_TASK_NAME both set -> both evaluated into one EVAL_OUTPUT_DIR."""
    task_dir = _write_task_dir(tmp_path / "task")
    out = tmp_path / "out"
    env = dict(os.environ, OPTIML_README_TASK_DIR=str(task_dir), JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "optiml_jax.eval", f"--gin.CHECKPOINT_PATH={hf_export}",
           f"--gin.EVAL_OUTPUT_DIR={out}", f"--gin.MIXTURE_OR_TASK_MODULE={MODULE}",
           f"--gin.MIXTURE_OR_TASK_NAME={TASK}", f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}",
           f"--gin.MAX_NEW_TOKENS={MAX_NEW}", "--gin.SUITES=['mini_bench']", "--gin.MAX_EXAMPLES=2",
           "--gin.SHOTS=(0,)"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{TASK}: exact_match=" in proc.stdout
    calls = _calls(task_dir)
    assert sorted(c["metric"] for c in calls) == ["exact_match", "mean_decode_score", "mean_log_likelihood"]
    assert all(c["pid"] != os.getpid() for c in calls)
    (line,) = _metrics_lines(out / "inference_eval", TASK)
    assert line["step"] == 0 and {"exact_match", "mean_log_likelihood", "mean_decode_score"} <= set(line)
    assert (out / "results.json").is_file() and (out / "report.md").is_file()  # the suites ran too
    assert len(calls[0]["targets"]) == 2  # MAX_EXAMPLES caps the task's examples as well


@pytest.mark.slow
def test_trainer_runs_the_gin_bound_seqio_callback_every_eval_period(task_dir, tmp_path):
    """`python -m optiml_jax.train` with SeqioEvalCallback bound by gin next to another callback."""
    from optiml_jax.cli import train as train_cli

    model_dir = tmp_path / "run"
    run_gin = tmp_path / "run.gin"
    run_gin.write_text(f"""
include 'runs/train.gin'
include 'models/opt_tiny_mini_bench.gin'
import optiml_jax.evaluation.hooks
MIXTURE_OR_TASK_MODULE = '{MODULE}'
DataConfig.stream_factory = @synthetic_stream  # random tokens: this test is about the callback, not the data
EvaluationConfig.eval_callback = @CompositeCallback()
CompositeCallback.callbacks = [@SeqioEvalCallback()]
SeqioEvalCallback.mixture_or_task_name = '{TASK}'
SeqioEvalCallback.task_feature_lengths = {LENGTHS}
SeqioEvalCallback.max_new_tokens = {MAX_NEW}
SeqioEvalCallback.batch_size = 4
""")
    _forget_module()
    rc = train_cli.main([f"--gin_file={run_gin}", "--no_progress", f"--gin.MODEL_DIR={model_dir}",
                         "--gin.MIXTURE_OR_TASK_NAME=synthetic", "--gin.TASK_FEATURE_LENGTHS={'targets': 32}",
                         "--gin.TRAIN_STEPS=4", "--gin.EVAL_PERIOD=2", "--gin.BATCH_SIZE=8",
                         "--gin.CHECKPOINT_PERIOD=4", "--gin.COMPUTE_DTYPE='float32'"])
    assert rc == 0
    log_dir = model_dir / "inference_eval"
    assert [l["step"] for l in _metrics_lines(log_dir, TASK)] == [0, 2, 4]  # before, every EVAL_PERIOD, at the end
    assert set(_tensorboard_scalars(log_dir / TASK)["eval/mean_log_likelihood"]) == {0, 2, 4}
    assert sorted({c["metric"] for c in _calls(task_dir)}) == ["exact_match", "mean_decode_score",
                                                              "mean_log_likelihood"]


def test_eval_cli_scores_a_project_task_with_its_own_metric_fn(hf_export, tmp_path):
    """Our registered tasks are ordinary seqio tasks with metric_fns: the seqio path evaluates them too."""
    import optiml_jax.tasks.mini_bench.registration  # noqa: F401
    from optiml_jax.cli import eval as eval_cli

    task = "mini_bench_t5_copy"
    assert [f.__name__ for f in seqio.TaskRegistry.get(task).metric_fns] == ["rouge_l_metric"]
    rc = eval_cli.main(["--gin_file=runs/eval.gin", f"--gin.CHECKPOINT_PATH={hf_export}",
                        f"--gin.EVAL_OUTPUT_DIR={tmp_path}", f"--gin.MIXTURE_OR_TASK_NAME={task}",
                        "--gin.MAX_EXAMPLES=4", "--gin.MAX_NEW_TOKENS=4", "--gin.EVAL_BATCH_SIZE=4"])
    _clear_gin()
    assert rc == 0
    lines = _metrics_lines(tmp_path / "inference_eval", task)
    assert lines and 0.0 <= lines[-1]["rouge_l"] <= 100.0
