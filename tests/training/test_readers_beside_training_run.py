"""A reader beside a trainer that checkpoints every step and keeps one: every read of the run's latest checkpoint
(what eval/infer do with CHECKPOINT_PATH = MODEL_DIR) gets an intact checkpoint of some step, and none is ever
reported damaged or moved aside. Before pruned steps left checkpoints/ in one rename, ~1 read in 9 of such a loop
failed with CorruptCheckpointError on a step being deleted file by file."""

import os
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a 60-step training run and a reader loop beside it, ~40 s
def test_reading_the_latest_checkpoint_beside_a_trainer_that_prunes_every_step(tmp_path):
    from optiml_jax.checkpoints.errors import CheckpointVanishedError
    from optiml_jax.checkpoints.resolve import load_checkpoint
    from optiml_jax.checkpoints.training_runs import finalized_steps_on_disk

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "optiml_jax.train", "--gin_file=gin/runs/smoke_synthetic.gin", "--no_progress",
           f"--gin.MODEL_DIR={run}", "--gin.TRAIN_STEPS=60", "--gin.CHECKPOINT_PERIOD=1", "--gin.KEEP_CHECKPOINTS=1",
           "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'targets': 32}", "--gin.EvaluationConfig.eval_streams={}"]
    trainer = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu",
                               XLA_FLAGS="--xla_force_host_platform_device_count=1"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    reads, vanished, steps_seen = 0, 0, set()
    try:
        deadline = time.time() + 300
        while trainer.poll() is None and time.time() < deadline:
            if not finalized_steps_on_disk(run) or not (run / "model_config.json").is_file():
                time.sleep(0.05)
                continue
            try:
                _, params = load_checkpoint(run)  # verified against the checksums recorded at save
            except CheckpointVanishedError:  # 10 steps in a row pruned under the reader: allowed, never damage
                vanished += 1
                continue
            reads += 1
            steps_seen.add(max(finalized_steps_on_disk(run) or [0]))
            assert params  # noqa: an empty tree would be a wrong read
        _, err = trainer.communicate(timeout=300)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 0, err[-3000:]
    assert reads >= 10 and len(steps_seen) >= 5, (reads, steps_seen)
    assert vanished <= reads // 10, (vanished, reads)
    assert not (run / "checkpoints_corrupt").exists()
    assert finalized_steps_on_disk(run) == [60]
    assert not (run / "checkpoints" / "pruned").exists()
