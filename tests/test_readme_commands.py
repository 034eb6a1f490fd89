"""Every `python -m optiml_jax.<command>` in the README is checked as written.

Each command is taken from the README's bash blocks (continuations joined, comments dropped, a `cd x &&`, `srun`,
`VAR=value` prefix or a `gcloud ... --command="..."` wrapper peeled off) and then
  * run for real when it takes seconds here (`tasks list`, `tasks inspect`, `infer` and `convert` with the README's
    checkpoint paths swapped for a tiny checkpoint), or
  * configuration-checked: the command's own argument parser and gin setup (files, bindings, required macros,
    macros no binding reads, MIXTURE_OR_TASK_MODULE imports), which is everything the command does before device
    work or data reading; the paths it names are a cluster's and are not opened.
A README command this test does not recognise fails it, so a new example cannot go unchecked.
"""

from __future__ import annotations

import pathlib
import re
import shlex

import gin
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Commands whose run needs what a reader supplies (a pod, data directories, hours): configuration-checked only.
NEEDS_EXTERNAL = ("train_opt_iml_bench.gin", "--num_processes", "opt_1_3b.gin", "MIXTURE_OR_TASK_NAME=example_alphabet_order",
                  "leakage --train mini_bench_train")


def readme_commands() -> list[list[str]]:
    """argv lists (starting at the `optiml_jax.<command>` module) of every README command."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        variables: dict[str, str] = {}
        for line in joined.splitlines():
            assignment = re.fullmatch(r'(\w+)="(.*)"', line.strip())
            if assignment:  # FT="--gin_file=... ..." then `python -m optiml_jax.plan $FT ...`
                variables[assignment[1]] = assignment[2]
                continue
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            commands += _commands_in(line)
    return commands


def _commands_in(line: str) -> list[list[str]]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: a multi-line wrapper, handled where it closes
        return []
    for w in words:
        if w.startswith("--command="):  # gcloud ... --command="cd repo && python -m ..."
            return _commands_in(w[len("--command="):])
    out = []
    for i, w in enumerate(words):
        if w == "-m" and i > 0 and words[i - 1] == "python" and i + 1 < len(words) \
                and words[i + 1].startswith("optiml_jax"):
            rest = words[i + 1:]
            for stop in ("&", "&&", ";", "|"):
                if stop in rest:
                    rest = rest[:rest.index(stop)]
            out.append([_substitute(w) for w in rest])
    return out


def _substitute(word: str) -> str:
    return word.replace("$RANK", "0").replace("$i", "0")


def _gin_clean():
    gin.clear_config()


@pytest.fixture(autouse=True)
def _clean():
    _gin_clean()
    yield
    _gin_clean()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny OPT exported as a Hugging Face dir with the mini-benchmark tokenizer (what infer/convert read)."""
    import jax

    from optiml_jax.checkpoints import save_hf_opt
    from optiml_jax.models import OPTConfig, init_params
    from optiml_jax.tasks.mini_bench.registration import TOKENIZER_DIR, VOCABULARY

    out = tmp_path_factory.mktemp("readme_hf")
    config = OPTConfig.preset("tiny", vocab_size=VOCABULARY.vocab_size, dropout_rate=0.0)
    save_hf_opt(config, init_params(config, jax.random.key(0)), out)
    for f in ("vocab.json", "merges.txt"):
        (out / f).write_bytes((pathlib.Path(TOKENIZER_DIR) / f).read_bytes())
    return out


@pytest.fixture(scope="module")
def tiny_metaseq(tiny_run, tmp_path_factory):
    """tiny_run's model as a 2-part metaseq checkpoint named like the OPT-IML 30B release."""
    from safetensors.torch import load_file

    from optiml_jax.checkpoints import load_hf_opt
    from optiml_jax.testing.metaseq_files import write_metaseq_checkpoint

    out = tmp_path_factory.mktemp("readme_metaseq")
    config, _ = load_hf_opt(tiny_run)
    write_metaseq_checkpoint(load_file(tiny_run / "model.safetensors"), config, out, num_parts=2,
                             name="checkpoint_1_4000")
    return out


def _tiny_paths(arg: str, tiny_run, tiny_metaseq, tmp_path) -> str:
    """The README's /models/... paths -> tiny checkpoints and fresh output dirs (longest first)."""
    from optiml_jax.tasks.mini_bench.registration import TOKENIZER_DIR

    for old, new in (("/models/opt-1.3b-orbax", tmp_path / "orbax"), ("/models/opt-1.3b", tiny_run),
                     ("/models/opt-iml-30b-orbax", tmp_path / "ms_orbax"), ("/models/opt-iml-30b-hf", tmp_path / "ms_hf"),
                     ("/models/opt-iml-30b", tiny_metaseq), ("/models/opt_tokenizer", TOKENIZER_DIR)):
        arg = arg.replace(old, str(new))
    return arg


def test_the_readme_has_the_commands_this_test_knows():
    cmds = readme_commands()
    modules = {c[0] for c in cmds}
    assert {"optiml_jax.train", "optiml_jax.tasks", "optiml_jax.eval", "optiml_jax.infer", "optiml_jax.convert",
            "optiml_jax.plan"} <= modules, modules
    assert len(cmds) >= 15


def _config_check(argv: list[str], tmp_path) -> None:
    """The command's parser and gin setup: what it does before any device work."""
    from optiml_jax.cli import gin_setup

    module, args = argv[0], argv[1:]
    if module == "optiml_jax.train":
        from optiml_jax.cli import train

        ns, bindings = train.parse_args(args)
        gin_setup.setup(ns, bindings)
    elif module == "optiml_jax.eval":
        from optiml_jax.cli import eval as eval_cli

        eval_cli.register_configurables()
        import argparse

        p = argparse.ArgumentParser()
        gin_setup.add_gin_arguments(p)
        ns, bindings = gin_setup.parse_command_line(p, args)
        gin_setup.setup(ns, bindings, default_files=["runs/eval.gin"])
    elif module == "optiml_jax.plan":
        from optiml_jax.cli import plan

        ns, bindings = plan.parse_args(args)
        gin_setup.apply_data_flags(ns)
        kwargs = plan.configure(ns.gin_file, bindings, gin_setup.search_paths_of(ns))
        assert kwargs["model_config"] is not None, argv
    elif module == "optiml_jax.tasks":
        from optiml_jax.cli.gin_setup import parse_command_line
        from optiml_jax.cli.tasks import build_parser, setup

        ns, bindings = parse_command_line(build_parser()[0], args)  # report/leakage: tens of seconds to run
        setup(ns, bindings)
        assert ns.command in ("report", "leakage"), argv
    else:
        raise AssertionError(f"README command not covered by this test: {' '.join(argv)}")


def test_every_readme_command_runs_or_passes_its_configuration_check(tiny_run, tiny_metaseq, tmp_path, capsys,
                                                                    monkeypatch):
    from optiml_jax.cli import convert, infer
    from optiml_jax.cli.tasks import main as tasks_main

    monkeypatch.chdir(REPO)
    ran, checked = [], []
    for argv in readme_commands():
        line = " ".join(argv)
        if "..." in argv or "(as" in argv:
            continue  # "--gin_file=... (as above)": a continuation of the command before it, not a command
        module, args = argv[0], argv[1:]
        _gin_clean()
        if module == "optiml_jax.tasks" and args[:1] in (["list"], ["inspect"]):
            assert tasks_main(args + (["--no_catalog"] if args[0] == "list" else [])) == 0, line
            ran.append(line)
        elif module == "optiml_jax.infer":
            args = [a.replace("/tmp/optiml_quickstart", str(tiny_run)) for a in args]
            assert infer.main(args + ["--gin.MAX_NEW_TOKENS=3"]) == 0, line
            ran.append(line)
        elif module == "optiml_jax.convert":
            args = [_tiny_paths(a, tiny_run, tiny_metaseq, tmp_path) for a in args]
            assert convert.main(args) == 0, line
            assert pathlib.Path(args[args.index("--out_dir") + 1]).is_dir(), line
            ran.append(line)
        else:
            _config_check(argv, tmp_path)
            checked.append(line)
    out = capsys.readouterr().out
    assert ">>> Reverse the word: cat" in out and "mini_bench_train" in out
    assert len(ran) >= 4 and any("quickstart.gin" in c for c in checked) and any("--distributed" in c for c in checked)
    assert all(any(k in c for c in checked) for k in NEEDS_EXTERNAL), (NEEDS_EXTERNAL, checked)
