"""Evaluation loads every checkpoint kind (HF dir, converter Orbax dir, training run) and the CLIs run end to end."""

import json

import jax
import numpy as np
import pytest

from optiml_jax.evaluation import DecoderOnlyModel
from optiml_jax.checkpoints.resolve import checkpoint_step, load_checkpoint


def _same_logits(a, b):
    tokens = np.array([[2, 10, 11, 12, 13]], np.int32)
    np.testing.assert_allclose(a.logits(tokens), b.logits(tokens), atol=1e-5)


def test_hf_and_orbax_and_training_run_checkpoints(hf_export, tmp_path, tiny_model, tiny_config, tiny_params):
    from optiml_jax.checkpoints import save_orbax
    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager

    _same_logits(DecoderOnlyModel.from_checkpoint(hf_export, tiny_model.vocabulary), tiny_model)
    save_orbax(tiny_config, tiny_params, tmp_path / "orbax")
    _same_logits(DecoderOnlyModel.from_checkpoint(tmp_path / "orbax", tiny_model.vocabulary), tiny_model)

    run = tmp_path / "run"
    manager = TrainCheckpointManager(run, period=1, async_save=False)
    state = {"params": tiny_params, "step": np.int32(5), "opt_state": {"mu": jax.tree.map(np.zeros_like, tiny_params)}}
    manager.save(5, state, {"step": 5}, force=True)
    manager.wait_until_finished()
    manager.close()
    (run / "model_config.json").write_text(tiny_config.to_json())
    config, params = load_checkpoint(run)
    assert config == tiny_config and checkpoint_step(run) == 5
    _same_logits(DecoderOnlyModel(config, params, tiny_model.vocabulary), tiny_model)
    assert checkpoint_step(run / "checkpoints" / "5") == 5


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="CHECKPOINT_PATH"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.slow
def test_eval_and_infer_clis(hf_export, tmp_path, capsys):
    from optiml_jax.cli import eval as eval_cli
    from optiml_jax.cli import infer as infer_cli

    rc = eval_cli.main(["--gin_file=runs/eval.gin", f"--gin.CHECKPOINT_PATH={hf_export}",
                        f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'out'}", "--gin.MAX_EXAMPLES=2", "--gin.SHOTS=(0,)",
                        "--gin.MAX_NEW_TOKENS=4"])
    assert rc == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["level"] for r in results["aggregates"]["levels"]} == {
        "fully_held_out", "partially_supervised", "fully_supervised"}
    rc = infer_cli.main([f"--gin.CHECKPOINT_PATH={hf_export}", "--gin.MAX_NEW_TOKENS=3", "--prompt", "Copy: ab",
                         "--jsonl"])
    assert rc == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith('{"prompt"')][0]
    assert json.loads(line)["prompt"] == "Copy: ab"


def test_eval_cli_reports_missing_required_settings(capsys):
    from optiml_jax.cli import eval as eval_cli

    assert eval_cli.main(["--gin_file=runs/eval.gin"]) == 2
    assert "CHECKPOINT_PATH" in capsys.readouterr().err


def test_a_model_read_beside_a_trainer_reports_the_step_it_read(tmp_path, tiny_model, tiny_config, tiny_params,
                                                                monkeypatch):
    """eval labels its results with the model's `checkpoint_step`: a trainer that finalizes step 7 while step 5 is
    read must not make step 5's parameters be reported as step 7's (what listing the run after the read says)."""
    import orbax.checkpoint as ocp

    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager

    run = tmp_path / "run"

    def save(step, params):
        manager = TrainCheckpointManager(run, period=1, async_save=False)
        manager.save(step, {"params": params, "step": np.int32(step)}, {"step": step}, force=True)
        manager.wait_until_finished()
        manager.close()

    save(5, tiny_params)
    (run / "model_config.json").write_text(tiny_config.to_json())
    original, newer = ocp.CheckpointManager.restore, []

    def restore(self, step, *args, **kwargs):
        if not newer:
            newer.append(7)
            save(7, jax.tree.map(lambda x: np.asarray(x) + 1.0, tiny_params))
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    model = DecoderOnlyModel.from_checkpoint(run, tiny_model.vocabulary)
    assert newer == [7] and checkpoint_step(run) == 7
    assert model.checkpoint_step == 5
    _same_logits(model, tiny_model)  # step 5's parameters
