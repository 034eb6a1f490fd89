"""`python -m optiml_jax.tasks` subcommands (run in-process through `main`)."""

import re

import gin
import pytest

from optiml_jax.cli.tasks import main


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


def test_list(capsys):
    assert main(["list", "--prefix", "mini_bench_"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mini_bench_niv2_antonym\s+niv2\s+word_analogy\s+task\s+fully_held_out\s+train=\d+", out)
    m = re.search(r"(\d+) tasks, (\d+) collections, (\d+) categories", out)
    assert int(m[1]) >= 40 and int(m[2]) >= 8 and int(m[3]) >= 12


def test_list_shows_every_task_when_one_is_broken_names_it_and_exits_1(capsys):
    from optiml_jax.tasks import registry
    from optiml_jax.tasks.metadata import TaskInfo
    from optiml_jax.tasks.mini_bench.registration import VOCABULARY

    info = TaskInfo("mini_bench_zz_broken_listing", "niv2", "arithmetic", instruction_type="task")
    rows = [{"instruction": "Add.", "input": "1 + 1", "target": ""}]
    registry.register_instruction_task(info, {"train": lambda: rows}, VOCABULARY, replace=True)
    try:
        assert main(["list", "--prefix", "mini_bench_", "--no_catalog"]) == 1
    finally:
        registry.unregister_task(info.name)
    out = capsys.readouterr().out
    assert re.search(r"mini_bench_niv2_antonym\s+niv2\s+word_analogy", out)  # the other tasks are still listed
    assert re.search(r"mini_bench_zz_broken_listing\s+.*train=!", out)
    assert re.search(r"1 split\(s\) could not be counted.*\n  mini_bench_zz_broken_listing \(train\): .*empty target", out)


def test_inspect_task(capsys):
    assert main(["inspect", "mini_bench_t5_reverse", "--num_examples", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("===== example") == 2 and "reverse: " in out and "--- target:" in out


def test_inspect_mixture_with_gin_binding(capsys):
    assert main(["inspect", "mini_bench_train", "--num_examples", "2", "--length", "256",
                 "--gin.MixtureRecipe.proportions={'flan': 1}", "--gin.MixtureRecipe.pretraining_share=0.0",
                 "--gin.MixtureRecipe.reasoning_share=0.0"]) == 0
    out = capsys.readouterr().out
    assert out.count("===== example") == 2 and "efficiency" in out
    assert "OPTIONS:" in out or "\n- " in out or "?" in out  # FLAN-only mixture: instance-level templates


def test_report_default_mixture_packs_at_least_95_percent(capsys):
    assert main(["report", "mini_bench_train", "--steps", "2", "--batch_size", "4",
                 "--gin_file", "mixtures/eps_128.gin"]) == 0
    out = capsys.readouterr().out
    eff = float(re.search(r"packing efficiency .*: ([0-9.]+)", out)[1])
    assert eff >= 0.95, out
    assert re.search(r"truncated \(left\): \d+", out) and "promptsource" in out
    assert re.search(r"^pretraining\s+0\.0500\s+0\.0500", out, re.M)


def test_tasks_cli_runs_after_an_earlier_command_locked_gin():
    """A notebook runs `train` (which finalizes and locks gin), then `tasks`: the tasks CLI's first imports
    register configurables, which a locked config used to refuse (RuntimeError)."""
    import subprocess
    import sys

    code = ("import gin; gin.finalize(); assert gin.config_is_locked()\n"
            "from optiml_jax.cli.tasks import main\n"
            "raise SystemExit(main(['list', '--prefix', 'mini_bench_niv2_antonym', '--no_catalog']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mini_bench_niv2_antonym" in out.stdout


@pytest.mark.parametrize("argv", [["inspect", "mini_bench_trian"], ["report", "mini_bench_trian"],
                                  ["leakage", "--train", "mini_bench_trian", "--eval", "mini_bench_default"]])
def test_an_unknown_name_is_exit_2_with_one_line_naming_the_closest(argv, capsys):
    from optiml_jax.cli.errors import run_command

    assert run_command(lambda: main(argv), argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    [line] = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("error: no task or mixture named 'mini_bench_trian' is registered; closest: "
                           "mini_bench_train"), line


def test_report_uses_the_run_files_lengths_batch_size_and_seed(capsys):
    from optiml_jax.cli.errors import run_command

    # gin/runs/quickstart.gin: TASK_FEATURE_LENGTHS = {'targets': 256}, BATCH_SIZE = 16 (not the flags' 2048, 8);
    # one task of its mixture keeps the test fast (the whole mixture is the slow test above)
    assert main(["report", "mini_bench_niv2_add", "--gin_file=runs/quickstart.gin", "--steps", "1"]) == 0
    assert "over 1 x 16 x 256:" in capsys.readouterr().out
    # the name may come from the configuration's MIXTURE_OR_TASK_NAME; flags that agree with it are accepted
    assert main(["report", "--gin_file=runs/quickstart.gin", "--gin.MIXTURE_OR_TASK_NAME=mini_bench_niv2_add",
                 "--steps", "1", "--batch_size", "16", "--length", "256"]) == 0
    out = capsys.readouterr().out
    assert "over 1 x 16 x 256:" in out and "mini_bench_niv2_add" in out
    for flag, file_value in (("--batch_size=8", "BATCH_SIZE = 16"),
                             ("--length=2048", "TASK_FEATURE_LENGTHS = {'targets': 256}")):
        argv = ["report", "mini_bench_train", "--gin_file=runs/quickstart.gin", flag]
        assert run_command(lambda: main(argv), argv) == 2
        err = capsys.readouterr().err
        assert f"error: {flag} disagrees with {file_value}" in err and "--gin_file=runs/quickstart.gin" in err, err
    argv = ["report", "mini_bench_train", "--gin_file=runs/quickstart.gin", "--gin.BATCH_SIZE=4", "--batch_size=8"]
    assert run_command(lambda: main(argv), argv) == 2
    assert "--batch_size=8 disagrees with BATCH_SIZE = 4 set by --gin.BATCH_SIZE" in capsys.readouterr().err


@pytest.mark.slow
def test_python_m_tasks_inspect_of_a_misspelled_mixture_exits_2():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "optiml_jax.tasks", "inspect", "mini_bench_trian"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "error: no task or mixture named 'mini_bench_trian' is registered; closest: mini_bench_train" in out.stderr
    assert "Traceback" not in out.stderr
