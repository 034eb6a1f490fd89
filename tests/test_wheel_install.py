"""A regular (non-editable) wheel install works outside the checkout: it ships the gin files, the task catalog,
the mini-benchmark's counts and tokenizer, and `python -m optiml_jax.train --gin_file=gin/runs/quickstart.gin`
runs from an unrelated working directory. Slow: builds a wheel and a venv."""

import os
import pathlib
import site
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs_the_quickstart_from_elsewhere(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("optiml_jax-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("optiml_jax/gin/runs/quickstart.gin", "optiml_jax/gin/models/opt_tiny_mini_bench.gin",
                    "optiml_jax/tasks/catalog/niv2_tasks.tsv", "optiml_jax/tasks/mini_bench/counts.json",
                    "optiml_jax/tasks/mini_bench/families.json",
                    "optiml_jax/tasks/mini_bench/bpe/vocab.json", "optiml_jax/tasks/mini_bench/bpe/merges.txt",
                    "optiml_jax_lm_eval.pth"):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    # Dependencies come from this interpreter's site-packages, optiml_jax itself only from the wheel. Not
    # `--system-site-packages`: there the checkout's editable-install finder (a .pth hook) would win over the
    # wheel. A plain .pth line, written after the install so pip never sees the checkout's dist-info, puts those
    # directories on sys.path without running the .pth hooks inside them.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}  # as a new user has it
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-3000:]
    venv_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (pathlib.Path(venv_site) / "zz_host_dependencies.pth").write_text("".join(p + "\n" for p in site.getsitepackages()))
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import optiml_jax; print(optiml_jax.__file__, optiml_jax.gin_dir())"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert where.stdout.startswith(str(venv)) and str(REPO) not in where.stdout, where.stdout + where.stderr
    run = subprocess.run([str(py), "-m", "optiml_jax.train", "--gin_file=gin/runs/quickstart.gin", "--no_progress",
                          f"--gin.MODEL_DIR={tmp_path / 'run'}", "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=4",
                          "--gin.CHECKPOINT_PERIOD=2", "--gin_bindings=EvaluationConfig.eval_callback = None",
                          "--gin_bindings=EvaluationConfig.eval_batches = 1"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "trained steps 0..2" in run.stdout
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
