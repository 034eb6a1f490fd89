"""Gin front end: REQUIRED checks, file/line errors, search paths, every model file, CLI bindings."""

import pathlib
import subprocess
import sys

import gin
import pytest

from optiml_jax.cli import gin_setup as gin_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_unset_required_are_listed_together():
    with pytest.raises(gin_config.GinConfigError) as e:
        gin_config.parse_gin(["runs/finetune.gin", "models/opt_125m.gin"], ["MODEL_DIR = '/tmp/x'"])
    msg = str(e.value)
    assert "INITIAL_CHECKPOINT_PATH" in msg and "MIXTURE_OR_TASK_NAME" in msg and "MODEL_DIR" not in msg
    assert "TRAIN_STEPS" not in msg  # the recipe sets it


def test_finetune_recipe_values():
    gin_config.parse_gin(["runs/finetune.gin", "models/opt_30b.gin"],
                         ["MODEL_DIR = '/tmp/x'", "MIXTURE_OR_TASK_NAME = 'm'", "INITIAL_CHECKPOINT_PATH = '/c'"])
    q = gin.query_parameter
    assert (q("BATCH_SIZE/macro.value"), q("TRAIN_STEPS/macro.value")) == (256, 4000)
    assert (q("LEARNING_RATE/macro.value"), q("WARMUP_STEPS/macro.value"), q("CLIP_GRAD_NORM/macro.value")) == (
        5e-5, 60, 1.0)
    assert q("OptimizerConfig.adam_b2") == 0.95 and q("OptimizerConfig.adam_eps") == 1e-8 and q("DROPOUT_RATE/macro.value") == 0.1
    assert q("TASK_FEATURE_LENGTHS/macro.value") == {"targets": 2048}
    assert q("opt_config.size") == "30b"


@pytest.mark.parametrize("name,layers,hidden", [("125m", 12, 768), ("350m", 24, 1024), ("1_3b", 24, 2048),
                                                ("2_7b", 32, 2560), ("6_7b", 32, 4096), ("13b", 40, 5120),
                                                ("30b", 48, 7168), ("66b", 64, 9216), ("175b", 96, 12288),
                                                ("tiny", 2, 64), ("tiny_synthetic", 2, 64)])
def test_every_model_file_builds_its_config(name, layers, hidden):
    gin_config.parse_gin(["runs/train.gin", f"models/opt_{name}.gin"],
                         ["MODEL_DIR='/x'", "MIXTURE_OR_TASK_NAME='m'", "TASK_FEATURE_LENGTHS={'targets': 8}",
                          "TRAIN_STEPS=1", "BATCH_SIZE=1"])
    config = gin.get_configurable("opt_config")()
    assert (config.num_layers, config.hidden_size, config.dtype, config.dropout_rate) == (layers, hidden, "bfloat16", 0.1)


def test_typo_in_gin_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("include 'runs/train.gin'\n\ntrain.learning_rat = 0.1\n")
    with pytest.raises(gin_config.GinConfigError) as e:
        gin_config.parse_gin([str(bad)])
    assert "learning_rat" in str(e.value) and "bad.gin" in str(e.value) and "line 3" in str(e.value)


def test_unknown_configurable_names_file_and_line(tmp_path):
    bad = tmp_path / "bad2.gin"
    bad.write_text("MODEL_DIR = '/x'\nnot_a_thing.value = 3\n")
    with pytest.raises(gin_config.GinConfigError) as e:
        gin_config.parse_gin([str(bad)])
    assert "not_a_thing" in str(e.value) and "bad2.gin" in str(e.value) and "line 2" in str(e.value)


def test_missing_gin_file_is_named():
    with pytest.raises(gin_config.GinConfigError, match="runs/nope.gin"):
        gin_config.parse_gin(["runs/nope.gin"])


def test_readme_spelling_gin_runs_resolves_from_another_directory(tmp_path, monkeypatch):
    """`--gin_file=gin/runs/quickstart.gin` (relative to the repo root) also works from elsewhere."""
    monkeypatch.chdir(tmp_path)
    paths = [str(p) for p in gin_config.gin_search_paths()]
    resolved = gin_config._resolve_gin_file("gin/runs/quickstart.gin", paths)
    assert pathlib.Path(resolved).samefile(pathlib.Path(paths[0]) / "runs" / "quickstart.gin")
    with pytest.raises(gin_config.GinConfigError, match="gin/runs/nope.gin: no such file"):
        gin_config._resolve_gin_file("gin/runs/nope.gin", paths)


def test_binding_normalisation_quotes_bare_values():
    assert gin_config.normalise_binding("MODEL_DIR=/tmp/run") == "MODEL_DIR = '/tmp/run'"
    assert gin_config.normalise_binding("TRAIN_STEPS=10") == "TRAIN_STEPS = 10"
    assert gin_config.normalise_binding("X={'targets': 8}") == "X = {'targets': 8}"
    assert gin_config.normalise_binding("X=%Y") == "X = %Y"


def test_cli_reports_unset_required_and_exits_2():
    out = subprocess.run([sys.executable, "-m", "optiml_jax.train", "--gin_file=gin/runs/train.gin",
                          "--gin_file=gin/models/opt_tiny.gin", "--gin.TRAIN_STEPS=3"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "BATCH_SIZE" in out.stderr and "MODEL_DIR" in out.stderr and "TRAIN_STEPS," not in out.stderr


def test_rerunning_a_finished_run_says_so_and_reprints_the_final_table(tmp_path):
    from optiml_jax.cli.train import completed_run_summary

    (tmp_path / "eval" / "step_300").mkdir(parents=True)
    (tmp_path / "eval" / "step_300" / "report.md").write_text("# Evaluation at step 300\n| level | ... |\n")
    text = completed_run_summary(tmp_path, 300)
    assert "already holds the finished run (step 300)" in text and "TRAIN_STEPS" in text
    assert text.rstrip().endswith("| level | ... |")
    assert "Final evaluation" not in completed_run_summary(tmp_path / "no_eval", 3)


def test_a_flat_train_binding_of_before_names_the_config_that_owns_it_now(tmp_path):
    """A user's gin file written for the flat train() (`train.learning_rate = ...`) gets the new binding's name."""
    old = tmp_path / "old.gin"
    old.write_text("include 'runs/train.gin'\n\ntrain.learning_rate = 0.1\n")
    with pytest.raises(gin_config.GinConfigError) as e:
        gin_config.parse_gin([str(old)])
    assert "train.learning_rate is now OptimizerConfig.learning_rate" in str(e.value)
    assert "its macro LEARNING_RATE" in str(e.value) and "old.gin" in str(e.value)
    with pytest.raises(gin_config.GinConfigError, match="train.eval_callback is now EvaluationConfig.eval_callback"):
        gin_config.parse_gin(["runs/smoke_synthetic.gin"], ["train.eval_callback = None"])
