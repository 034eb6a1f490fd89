"""A resume with a changed configuration: continues where that is exact, is refused with one line naming the
setting otherwise, and a refusal changes nothing in MODEL_DIR (no checkpoint is ever called damaged for it)."""

import pathlib
import shutil

import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.training.synthetic_data import synthetic_stream

from optiml_jax.checkpoints.errors import CheckpointMismatchError
from optiml_jax.training.errors import ConfigValueError
from optiml_jax.training.train_loop import train


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """2 steps, checkpoints at steps 1 and 2, on one device."""
    import jax

    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules

    d = tmp_path_factory.mktemp("base") / "run"
    config = opt_config("tiny", vocab_size=512, dtype="float32", dropout_rate=0.0)  # as conftest's tiny_config
    part = Partitioner(make_mesh((1, 1, 1), jax.devices()[:1]), standard_rules("data_parallel"))
    kw = dict(model_dir=str(d), mixture_or_task_name="synthetic", stream_factory=synthetic_stream,
              task_feature_lengths={"targets": 32},
              train_steps=2, batch_size=6, model_config=config, partitioner=part,
              learning_rate=1e-3, warmup_steps=1, checkpoint_period=1, progress=False, peak_flops=1e11)
    train(**train_configs(**kw))
    return d, kw


def _copy(base_run, tmp_path):
    d, kw = base_run
    dst = tmp_path / "run"
    shutil.copytree(d, dst)
    return dst, {**kw, "model_dir": str(dst)}


def _snapshot(d: pathlib.Path) -> dict:
    """Every entry, and each file's bytes and mtime (a directory's own mtime moves with the storage probe's
    create-and-delete of a file in it, which leaves nothing behind)."""
    return {str(p.relative_to(d)): (p.stat().st_mtime_ns, p.read_bytes()) if p.is_file() else "dir"
            for p in sorted(d.rglob("*"))}


def _refused(kw, d, exc, match):
    before = _snapshot(d)
    with pytest.raises(exc, match=match):
        train(**train_configs(**kw))
    assert _snapshot(d) == before  # nothing moved, written or removed
    assert sorted(int(p.name) for p in (d / "checkpoints").iterdir() if p.name.isdigit()) == [1, 2]
    assert not (d / "checkpoints_corrupt").exists()


def test_a_mesh_that_does_not_divide_the_model_is_exit_2_and_every_checkpoint_stays(base_run, tmp_path, make_part):
    d, kw = _copy(base_run, tmp_path)
    _refused({**kw, "train_steps": 4, "partitioner": make_part((1, 1, 3), "tensor")}, d, ConfigValueError,
             r"MESH_SHAPE gives \{'data': 1, 'fsdp': 1, 'tensor': 3\}, which does not divide the model: .*"
             r"\(heads, size 4\) over tensor=3")


@pytest.mark.parametrize("change, match", [
    ({"batch_size": 12}, r"BATCH_SIZE \(DataConfig.batch_size\) = 12 but the checkpoint of step 2 in .* was trained with "
                         r"6: resuming would skip or repeat examples \(data position: step 2, 12 examples\)"),
    ({"task_feature_lengths": {"targets": 64}},
     r"TASK_FEATURE_LENGTHS \(DataConfig.task_feature_lengths\) = \{'targets': 64\} but the checkpoint of step 2"),
], ids=["batch_size", "task_feature_lengths"])
def test_a_changed_data_shape_is_refused_naming_the_setting(base_run, tmp_path, change, match):
    d, kw = _copy(base_run, tmp_path)
    _refused({**kw, "train_steps": 4, **change}, d, ConfigValueError, match)


def test_another_model_size_is_refused_before_model_config_json_is_written(base_run, tmp_path, tiny_config):
    d, kw = _copy(base_run, tmp_path)
    _refused({**kw, "train_steps": 4, "model_config": tiny_config(hidden_size=128)}, d, CheckpointMismatchError,
             "holds another model or optimizer state than the one configured")


@pytest.mark.slow  # trains 2 more steps (6 s)
def test_raising_train_steps_says_old_and_new_end_step(base_run, tmp_path, caplog):
    d, kw = _copy(base_run, tmp_path)
    result = train(**train_configs(**{**kw, "train_steps": 4}))
    want = "TRAIN_STEPS changed on resume at step 2: the run now ends at step 4 (was 2)"
    assert [w for w in result.warnings if w.startswith(want)] and result.restored_from == 2
    assert result.final_step == 4
