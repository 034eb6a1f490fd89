"""Orbax checkpoints: restore onto other meshes, half-written tmp dirs ignored, non-finite handling,
fine-tuning from INITIAL_CHECKPOINT_PATH, metrics files."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.checkpoints import training_runs as checkpointing
from optiml_jax.training import optimizer, train_state
from optiml_jax.training.synthetic_data import SyntheticStream, synthetic_stream
from optiml_jax.training.train_loop import NonFiniteError, train


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    """A 4-step run saved on 8 devices with FSDP (checkpoints at steps 2 and 4)."""
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules

    d = tmp_path_factory.mktemp("fsdp") / "run"
    config = opt_config("tiny", vocab_size=512, dtype="float32", dropout_rate=0.0)
    result = train(**train_configs(model_dir=str(d), mixture_or_task_name="synthetic", stream_factory=synthetic_stream,
                   task_feature_lengths={"targets": 32},
                   train_steps=4, batch_size=8, model_config=config,
                   partitioner=Partitioner(make_mesh((1, 8, 1)), standard_rules("fsdp")), learning_rate=1e-3,
                   warmup_steps=1, checkpoint_period=2, progress=False, peak_flops=1e11))
    return d, config, result


@pytest.mark.parametrize("mesh_shape,rules", [((1, 1, 1), "data_parallel"), ((2, 1, 2), "fsdp_tensor")])
def test_restore_on_a_different_mesh(fsdp_run, make_part, mesh_shape, rules):
    run_dir, config, result = fsdp_run
    tx = optimizer.make_optimizer(optimizer.make_schedule(1e-3, 1, 4))
    part = make_part(mesh_shape, rules)
    mgr = checkpointing.TrainCheckpointManager(run_dir, period=2)
    assert mgr.all_steps() == [2, 4]
    state, data, step = mgr.restore(train_state.abstract_state(config, tx, part))
    mgr.close()
    assert step == 4 and data["step"] == 4 and int(state.step) == 4
    assert state.params["decoder"]["layers_0"]["fc1"]["kernel"].sharding.mesh.devices.size == int(np.prod(mesh_shape))
    for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(jax.device_get(result.state))):
        np.testing.assert_array_equal(a, b)


def test_half_written_tmp_checkpoint_is_ignored(fsdp_run, tmp_path, make_part):
    run_dir, config, _ = fsdp_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    ckpts = copy / "checkpoints"
    # What a process killed mid-save leaves behind: an unfinalized tmp directory for a later step.
    partial = ckpts / "6.orbax-checkpoint-tmp-1234567"
    shutil.copytree(ckpts / "4", partial)
    shutil.rmtree(partial / "state" / "d")
    (partial / "commit_success.txt").unlink(missing_ok=True)
    mgr = checkpointing.TrainCheckpointManager(copy, period=2)
    assert mgr.latest_step() == 4
    tx = optimizer.make_optimizer(optimizer.make_schedule(1e-3, 1, 4))
    _, data, step = mgr.restore(train_state.abstract_state(config, tx, make_part((1, 1, 1))))
    mgr.close()
    assert step == 4 and data["step"] == 4


def test_metrics_files(fsdp_run):
    run_dir, _, _ = fsdp_run
    records = [json.loads(x) for x in (run_dir / "metrics" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_second", "target_tokens_per_second", "mfu"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert records[0]["learning_rate"] == 0.0 and records[1]["learning_rate"] == pytest.approx(1e-3)
    events = list((run_dir / "metrics" / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 200


class _PoisonedStream(SyntheticStream):
    """Synthetic stream whose batch at `bad_step` has NaN loss weights (-> NaN loss)."""

    bad_step = 3

    def get_batch(self, step):
        b = super().get_batch(step)
        if step == self.bad_step:
            b["decoder_loss_weights"] = b["decoder_loss_weights"] * np.nan
        return b


def _poisoned(**kw):
    s = synthetic_stream(**kw)
    return _PoisonedStream(**{f: getattr(s, f) for f in ("batch_size", "sequence_length", "vocab_size", "seed",
                                                         "shard_index", "num_shards")})


def test_nonfinite_stops_and_leaves_last_good_checkpoint(train_kwargs):
    """Step 3 ends at 4, due a save (CHECKPOINT_PERIOD = 2): the staged save is handed to the saver only after its
    step's metrics are checked, so the non-finite stop leaves no checkpoint 4 (handing it over at once would)."""
    with pytest.raises(NonFiniteError, match=r"step 3: .*The last good checkpoint \(step 2\)"):
        train(**train_configs(**{**train_kwargs, "train_steps": 6, "stream_factory": _poisoned}))
    ckpts = pathlib.Path(train_kwargs["model_dir"]) / "checkpoints"
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [2]


def test_nonfinite_skip_keeps_params_and_continues(train_kwargs):
    result = train(**train_configs(**{**train_kwargs, "train_steps": 5, "stream_factory": _poisoned, "on_nonfinite": "skip"}))
    flags = [r["nonfinite"] for r in result.history]
    assert flags == [0, 0, 0, 1, 0]
    assert result.skipped_steps == [3] and result.skipped_total == 1  # the final summary's count
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(result.state.params)))
    assert np.isfinite(result.history[4]["loss"])


def test_finetune_starts_from_our_checkpoint_params_only(fsdp_run, train_kwargs, tmp_path):
    run_dir, config, result = fsdp_run
    ft = train(**train_configs(**{**train_kwargs, "model_dir": str(tmp_path / "ft"), "train_steps": 1,
                  "initial_checkpoint_path": str(run_dir), "learning_rate": 0.0, "warmup_steps": 0}))
    assert ft.restored_from is None and int(ft.state.step) == 1
    for a, b in zip(jax.tree.leaves(jax.device_get(ft.state.params)), jax.tree.leaves(jax.device_get(result.state.params))):
        np.testing.assert_array_equal(a, b)  # lr 0: parameters are exactly the initial checkpoint's
    mu = jax.tree.leaves(ft.state.opt_state)
    assert any(np.abs(np.asarray(x)).sum() > 0 for x in mu if np.ndim(x) > 0)  # fresh moments after one step


def test_finetune_from_converted_directory(train_kwargs, tmp_path, tiny_config):
    convert = pytest.importorskip("optiml_jax.checkpoints.orbax_params")
    from optiml_jax.models import init_params

    config = tiny_config()
    params = init_params(config, jax.random.key(42))
    convert.save_orbax(config, params, tmp_path / "converted")
    ft = train(**train_configs(**{**train_kwargs, "model_dir": str(tmp_path / "ft2"), "train_steps": 1,
                  "initial_checkpoint_path": str(tmp_path / "converted"), "learning_rate": 0.0, "warmup_steps": 0}))
    for a, b in zip(jax.tree.leaves(jax.device_get(ft.state.params)), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    wrong = tiny_config(hidden_size=32, num_heads=2, ffn_dim=64)
    with pytest.raises(ValueError, match="hidden_size"):
        train(**train_configs(**{**train_kwargs, "model_dir": str(tmp_path / "ft3"), "model_config": wrong,
                 "initial_checkpoint_path": str(tmp_path / "converted")}))
