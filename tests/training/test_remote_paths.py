"""Paths are URLs where users write URLs (issue 21): MODEL_DIR, outputs, data and tokenizer dirs go through
`optiml_jax.paths`, so a URL reaches its filesystem intact and never becomes a local `scheme:` directory.

Two offline non-local filesystems:
* `gs://` itself, served from memory by `optiml_jax.testing.fake_gcs` (TensorStore's GCS driver over HTTP for
  Orbax's arrays, fsspec's `gcs` protocol for epath, Orbax's google-cloud-storage bucket query): a whole training
  run writes its checkpoints there and resumes from there (slow set);
* TensorFlow's `ram://` through tf.io.gfile (epath's gfile backend, the one it uses for gs:// when TensorFlow is
  installed; `optiml_jax.testing.ram_filesystem`): everything of ours that MODEL_DIR holds besides Orbax's
  checkpoints (run lock, storage probes, metrics JSONL and TensorBoard, config.gin), evaluation outputs, data,
  template and tokenizer dirs are written to and read back from it. Orbax cannot keep arrays there (its
  TensorStore layer takes local paths and gs:// only), so MODEL_DIR on ram:// is refused before any device work."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.paths import PathSettingError, user_path
from optiml_jax.testing.ram_filesystem import ram_tree, register_ram_filesystem
from optiml_jax.training.train_loop import train

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _ram():
    register_ram_filesystem()


def _scheme_dirs(*roots: pathlib.Path) -> list[pathlib.Path]:
    """Local files or directories whose name is a URL scheme pathlib folded (`gs:`, `ram:`, `nosuch:`)."""
    out = []
    for root in roots:
        out += [p for p in root.rglob("*") if p.name.endswith(":")]
    return out


def _tmp_scheme_names() -> set[str]:
    return {p.name for p in pathlib.Path("/tmp").iterdir() if p.name.endswith(":")}


@pytest.mark.parametrize("url,reason", [
    ("ram://remote_run/a", "Orbax .* keeps checkpoints on local paths and gs:// only"),
    ("nosuch://bucket/run", "no filesystem for nosuch:// is available here"),
    ("gs://optiml-no-such-bucket/run", "(Orbax reads and writes gs:// checkpoints through google-cloud-storage, which is not installed|cannot reach its filesystem)"),
])
def test_a_model_dir_url_orbax_cannot_use_stops_before_any_device_work(url, reason, train_kwargs, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _tmp_scheme_names()
    made = []
    with pytest.raises(PathSettingError, match=f"^MODEL_DIR = '{url}': {reason}") as e:
        train(**train_configs(**{**train_kwargs, "model_dir": url, "partitioner": lambda: made.append(1)}))
    assert "\n" not in str(e.value)
    assert made == []  # the partitioner (mesh, devices) was never built
    assert _scheme_dirs(tmp_path) == [] and _tmp_scheme_names() == before


def test_an_initial_checkpoint_url_is_checked_before_any_device_work(train_kwargs, tmp_path):
    made = []
    with pytest.raises(PathSettingError, match="^INITIAL_CHECKPOINT_PATH = 'nosuch://b/opt': no filesystem for"):
        train(**train_configs(**{**train_kwargs, "initial_checkpoint_path": "nosuch://b/opt", "partitioner": lambda: made.append(1)}))
    assert made == [] and not pathlib.Path(train_kwargs["model_dir"]).exists()


def test_a_folded_url_is_refused_rather_than_made_a_local_directory(train_kwargs, tmp_path, monkeypatch):
    """`pathlib.Path('gs://b/run')` is what users' Python code hands over; before the path layer the trainer
    created ./gs:/b/run from it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PathSettingError, match="write 'gs://b/run'"):
        train(**train_configs(**{**train_kwargs, "model_dir": pathlib.Path("gs://b/run"), "partitioner": lambda: None}))
    assert list(tmp_path.iterdir()) == []


def test_run_dir_pieces_live_on_the_remote_filesystem(tmp_path, monkeypatch):
    from optiml_jax.cli.gin_setup import write_configs
    from optiml_jax.training.errors import RunLockedError
    from optiml_jax.training.metrics import MetricsLogger, read_scalar_events
    from optiml_jax.training.run_dir import RunLock, check_storage

    monkeypatch.chdir(tmp_path)
    run = user_path("ram://pieces/run", "MODEL_DIR")
    lock = RunLock(run)
    lock.acquire()
    try:
        with pytest.raises(RunLockedError, match=r"MODEL_DIR ram://pieces/run is in use by another training run: pid "
                                                 f"{os.getpid()}"):
            RunLock(run).acquire()
        assert check_storage(run, run / "checkpoints", checkpoint_bytes=1 << 20, keep=3) == []
        logger = MetricsLogger(run, start_step=0, total_steps=4, progress=False)
        for step in range(4):
            logger.log(step, {"loss": 4.0 - step})
        logger.log(3, {"loss": 9.0}, split="validation")
        logger.close()
        write_configs(run)
        # a restart at step 2 cuts what was logged from step 2 on, on the remote files
        MetricsLogger(run, start_step=2, total_steps=4, progress=False).close()
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    files = ram_tree("ram://pieces/run")
    assert "run.lock" not in files  # released
    assert [json.loads(x)["step"] for x in files["metrics/train.jsonl"].decode().splitlines()] == [0, 1]
    assert files["metrics/validation.jsonl"] == b""
    assert read_scalar_events(run / "metrics" / "tensorboard" / "train") == [(0, "loss", 4.0), (1, "loss", 3.0)]
    assert {"config.gin", "operative_config.gin"} <= set(files)
    assert not any(k.startswith("checkpoints/.write_probe") or k.startswith(".write_probe") for k in files)
    assert _scheme_dirs(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_evaluation_outputs_and_baseline_on_the_remote_filesystem(tmp_path, monkeypatch):
    from optiml_jax.evaluation.outputs import load_results, results_dict, write_all

    monkeypatch.chdir(tmp_path)
    records = [{"task": "t", "base_task": "t", "template": "default", "parent_task": "t", "category": "nli",
                "level": "held_out_tasks", "collection": "niv2", "shots": 0, "metric": "accuracy", "score": 50.0}]
    results = results_dict(records, step=3, shots=[0])
    out = write_all("ram://evals/out", results, [{"id": "a", "prediction": "x"}])
    files = ram_tree("ram://evals/out")
    assert os.fspath(out) == "ram://evals/out"
    assert {"results.json", "results_step3.json", "predictions_step3.jsonl", "report.md"} <= set(files)
    assert load_results("ram://evals/out")["step"] == 3
    assert json.loads(files["predictions_step3.jsonl"]) == {"id": "a", "prediction": "x"}
    assert _scheme_dirs(tmp_path) == []


def test_eval_output_dir_on_an_unknown_scheme_stops_before_weights_load(tmp_path):
    from optiml_jax.evaluation.entry_points import evaluate

    with pytest.raises(PathSettingError, match="^EVAL_OUTPUT_DIR = 'nosuch://b/eval': no filesystem for nosuch://"):
        evaluate(str(tmp_path / "no_checkpoint_here"), "nosuch://b/eval")


def test_readers_read_data_and_tokenizer_dirs_from_the_remote_filesystem(tmp_path):
    import tensorflow as tf

    from optiml_jax.sources.niv2_reader import read_niv2_tasks
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR
    from optiml_jax.testing.source_files import write_niv2_task
    from optiml_jax.vocabularies import OPTVocabulary

    local = tmp_path / "niv2"
    write_niv2_task(local, "task001_remote_test", n=5)
    tf.io.gfile.makedirs("ram://data/niv2")
    tf.io.gfile.makedirs("ram://data/tok")
    for f in local.iterdir():
        tf.io.gfile.copy(str(f), f"ram://data/niv2/{f.name}", overwrite=True)
    for f in pathlib.Path(TOKENIZER_DIR).iterdir():
        if f.is_file():
            tf.io.gfile.copy(str(f), f"ram://data/tok/{f.name}", overwrite=True)
    [remote] = list(read_niv2_tasks("ram://data/niv2"))
    [here] = list(read_niv2_tasks(local))
    assert os.fspath(remote.path) == "ram://data/niv2/task001_remote_test.json"
    assert (remote.name, remote.definition, remote.instances) == (here.name, here.definition, here.instances)
    vocab, ref = OPTVocabulary("ram://data/tok"), OPTVocabulary(TOKENIZER_DIR)
    assert os.fspath(vocab.path) == "ram://data/tok"
    text = "Reverse the word: cat"
    assert vocab.encode(text) == ref.encode(text) and vocab.vocab_size == ref.vocab_size


def _copy_tree_to_ram(local: pathlib.Path, url: str) -> None:
    import tensorflow as tf

    for f in local.rglob("*"):
        if f.is_file():
            target = f"{url}/{f.relative_to(local)}"
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(f), target, overwrite=True)


def test_template_and_local_dataset_readers_read_from_the_remote_filesystem(tmp_path):
    from optiml_jax.sources.flan_reader import load_patterns
    from optiml_jax.sources.local_datasets import find_split_file, iter_rows
    from optiml_jax.sources.promptsource_templates import load_all_templates
    from optiml_jax.testing.source_files import write_flan, write_promptsource

    write_promptsource(tmp_path / "ps", tmp_path / "psdata", "ag_news", "remote")
    write_promptsource(tmp_path / "ps", tmp_path / "psdata", "super_glue/rte", "remote2")
    write_flan(tmp_path / "flan" / "templates.json", tmp_path / "flandata")
    _copy_tree_to_ram(tmp_path, "ram://templates")
    here, remote = load_all_templates(tmp_path / "ps"), load_all_templates("ram://templates/ps")
    assert sorted(remote) == sorted(here) == ["ag_news", "super_glue/rte"]
    assert [t.jinja for t in remote["super_glue/rte"]] == [t.jinja for t in here["super_glue/rte"]]
    assert load_patterns("ram://templates/flan/templates.json") == load_patterns(tmp_path / "flan" / "templates.json")
    split = find_split_file("ram://templates/psdata/ag_news", "validation")
    assert os.fspath(split) == "ram://templates/psdata/ag_news/validation.jsonl"
    assert list(iter_rows(split)) == list(iter_rows(tmp_path / "psdata" / "ag_news" / "validation.jsonl"))


@pytest.mark.slow
def test_train_cli_exits_2_naming_model_dir_for_an_unreachable_scheme(tmp_path):
    """The command as a user runs it: one line, exit 2, nothing local, before the mesh is built."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONPATH=str(REPO))
    for url in ("nosuch://bucket/run", "gs://optiml-no-such-bucket/run"):
        out = subprocess.run([sys.executable, "-m", "optiml_jax.train", "--gin_file=runs/smoke_synthetic.gin",
                              f"--gin.MODEL_DIR={url}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 2, out.stderr[-3000:]
        errors = [x for x in out.stderr.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: MODEL_DIR = '{url}': "), out.stderr[-2000:]
        assert "Traceback" not in out.stderr and "mesh" not in out.stderr
        assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # 36 s here: two train() calls (fresh and resumed) with Orbax saves over HTTP
def test_a_training_run_on_gs_writes_its_checkpoints_there_and_resumes_from_there(train_kwargs, tmp_path,
                                                                                  monkeypatch):
    """A real gs:// run, offline: Orbax's arrays through TensorStore's GCS driver and everything else through
    epath both reach `optiml_jax.testing.fake_gcs` (one in-memory bucket); nothing is written locally."""
    from optiml_jax.testing.fake_gcs import fake_gcs

    monkeypatch.chdir(tmp_path)
    before = _tmp_scheme_names()
    kwargs = {**train_kwargs, "model_dir": "gs://bucket/run", "checkpoint_period": 2, "keep_checkpoints": 2}
    with fake_gcs(("bucket",)) as fs:
        first = train(**train_configs(**{**kwargs, "train_steps": 4}))
        assert os.fspath(first.model_dir) == "gs://bucket/run" and first.final_step == 4
        objects = set(fs.store)
        assert {"/bucket/run/checkpoints/4/commit_success.txt", "/bucket/run/checkpoints/4/state/manifest.ocdbt",
                "/bucket/run/model_config.json", "/bucket/run/metrics/train.jsonl"} <= objects
        assert any(k.startswith("/bucket/run/checkpoints/4/state/ocdbt.process_0/d/") for k in objects)
        assert "/bucket/run/run.lock" not in objects  # released
        second = train(**train_configs(**{**kwargs, "train_steps": 6}))
        assert (second.start_step, second.final_step) == (4, 6)  # restored from the bucket's step 4
        steps = sorted({int(k.split("/")[4]) for k in fs.store if k.startswith("/bucket/run/checkpoints/")})
        assert steps == [4, 6]  # keep_checkpoints = 2: Orbax deleted step 2 on the bucket
        log = [json.loads(x)["step"] for x in fs.cat_file("/bucket/run/metrics/train.jsonl").decode().splitlines()]
        assert log == [0, 1, 2, 3, 4, 5]
        # eval/infer's reader (CHECKPOINT_PATH) restores the bucket's latest step, verified against its checksums
        import jax
        import numpy as np

        from optiml_jax.checkpoints.resolve import load_checkpoint, resolve

        assert resolve("gs://bucket/run").kind == "training_run"
        _, params = load_checkpoint("gs://bucket/run")
        for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(second.state.params)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert list(tmp_path.iterdir()) == [] and _tmp_scheme_names() == before
