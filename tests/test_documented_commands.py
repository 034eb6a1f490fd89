"""Every command in the documentation is a test (#21): README.md, tasks/README.md, docs/, gin/**/README.md and the
header comment of every gin file, extracted from the files themselves (`optiml_jax.testing.documented_commands`).

Each command is rewritten only in its sizes and paths (`tiny`): model files -> `models/opt_tiny.gin`, TRAIN_STEPS -> 2,
BATCH_SIZE -> 8 per microbatch, rows -> 128 tokens, MESH_SHAPE -> (1, 4, 2) on 8 CPU devices, cluster and bucket paths
-> this test's directories (a tiny OPT checkpoint, a few NIv2 tasks, the OPT tokenizer), `--distributed` / a cluster's
coordinator -> 2 local processes over loopback. Then
  * default set: every command passes its own parser, gin setup and data check (what it does before any device
    work: files, bindings, required and unread macros, MIXTURE_OR_TASK_NAME resolving, OPT-IML Bench registering), and the
    commands that take seconds (tasks list/inspect, infer, convert) run for real;
  * slow set: every command runs for real, in a subprocess, as a user would run it, and must exit 0.
A command this test cannot rewrite fails it, so a new example cannot go unchecked; an edit that breaks a command
fails it too (tested below on an edited copy of the README).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import gin
import pytest

from optiml_jax.testing.documented_commands import DocumentedCommand, commands_in_file, documented_commands
from optiml_jax.testing.source_files import MINI_TOKENIZER, write_niv2_task

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
COMMANDS = documented_commands(REPO)
RUN_IN_DEFAULT_SET = ("tasks list", "tasks inspect", "infer", "convert")


@pytest.fixture(autouse=True)
def _clean():
    from optiml_jax.tasks.mini_bench import registration as mini_bench

    gin.clear_config()
    yield
    gin.clear_config()
    if mini_bench.registered_vocabulary() is not mini_bench.VOCABULARY:  # a Llama dir's run re-registered it
        mini_bench.register()


@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    """What the documented commands' cluster paths are pointed at."""
    import jax

    from optiml_jax.checkpoints import save_hf_opt
    from optiml_jax.models import OPTConfig, init_params
    from optiml_jax.tasks.mini_bench.registration import VOCABULARY

    root = tmp_path_factory.mktemp("documented")
    mini = root / "tiny_mini_bench_hf"  # /tmp/optiml_quickstart, /models/opt-1.3b: a checkpoint with its tokenizer
    config = OPTConfig.preset("tiny", vocab_size=VOCABULARY.vocab_size, dropout_rate=0.0)
    save_hf_opt(config, init_params(config, jax.random.key(0)), mini)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(pathlib.Path(MINI_TOKENIZER) / f, mini / f)
    from safetensors.torch import load_file

    from optiml_jax.testing.metaseq_files import write_metaseq_checkpoint

    metaseq = root / "tiny_metaseq"  # /models/opt-iml-30b: the mini checkpoint as 2 parts named like the release
    write_metaseq_checkpoint(load_file(mini / "model.safetensors"), config, metaseq, num_parts=2,
                             name="checkpoint_1_4000")
    opt = root / "tiny_opt_hf"  # INITIAL_CHECKPOINT_PATH of models/opt_tiny.gin (OPT's 50272 ids)
    config = OPTConfig.preset("tiny", dropout_rate=0.0)
    save_hf_opt(config, init_params(config, jax.random.key(1)), opt)
    llama = root / "tiny_llama_hf"  # /models/Llama-3.2-1B: a Llama-3-shaped transformers dir with its own tokenizer
    write_llama_hf_dir(llama)
    niv2 = root / "niv2"
    if (SHARED / "niv2" / "tasks").is_dir():  # a few real NIv2 tasks
        shutil.copytree(SHARED / "niv2" / "tasks", niv2)
    else:
        for stem in ("task001_quoref_question_generation", "task002_quoref_answer_generation",
                     "task062_bigbench_repeat_copy_logic"):  # the one gin/bench/opt_iml_bench.gin inspects
            write_niv2_task(niv2, stem, n=24)
    tokenizer = SHARED / "opt_tokenizer" if (SHARED / "opt_tokenizer").is_dir() else pathlib.Path(MINI_TOKENIZER)
    # DATA_DIR (the suites' files): ../shared's MMLU/BBH/RAFT, and NIv2 with one task of a held-out category (the
    # shared sample has none of the paper's three, so `niv2_held_out` would find nothing)
    data_dir = root / "data"
    for sub in ("mmlu", "bbh", "raft"):
        if (SHARED / sub).is_dir():
            (data_dir / sub).parent.mkdir(parents=True, exist_ok=True)
            (data_dir / sub).symlink_to(SHARED / sub)
    shutil.copytree(niv2, data_dir / "niv2" / "tasks")
    held_out = write_niv2_task(data_dir / "niv2" / "tasks", "task190_snli_classification", n=6)
    held_out.write_text(held_out.read_text().replace('"Categories": ["Misc."]', '"Categories": ["Textual Entailment"]'))
    # TOKENIZER_DIR of a USE_CHAT_TEMPLATE command: a Llama-3-shaped tokenizer with its chat template
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer

    chat_tokenizer = write_family_tokenizer(root / "chat_tokenizer", "llama3",
                                            [p.read_text()[:20000] for p in sorted(niv2.glob("*.json"))[:4]] or ["a b"])
    return {"root": root, "mini": mini, "opt": opt, "niv2": niv2, "tokenizer": tokenizer, "metaseq": metaseq,
            "data_dir": data_dir, "chat_tokenizer": chat_tokenizer, "llama": llama}


def write_llama_hf_dir(out: pathlib.Path) -> pathlib.Path:
    """A tiny random Llama-family Hugging Face directory (config.json, safetensors, generation_config.json) beside a
    Llama-3-shaped tokenizer trained on mini-benchmark text."""
    import jax
    import numpy as np

    from optiml_jax.checkpoints.families import save_hf
    from optiml_jax.models import LlamaConfig
    from optiml_jax.models.family import init_model_params
    from optiml_jax.tasks.mini_bench import TASKS, generate_task
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer
    from optiml_jax.vocabularies import HFTokenizerVocabulary
    from optiml_jax.vocabularies.special_ids import special_ids_of

    texts = [t for info in TASKS[:8] for ex in generate_task(info.name)["train"][:40]
             for t in (ex["instruction"], ex["input"], " " + ex["target"])]
    tok = write_family_tokenizer(out.parent / f"{out.name}_tokenizer", "llama3", texts, bpe_size=500)
    ids = special_ids_of(HFTokenizerVocabulary(tok))
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, max_position_embeddings=256, dropout_rate=0.0,
                                bos_token_id=ids.bos, eos_token_id=ids.eos_id, pad_token_id=None)
    rng = np.random.default_rng(2)  # random weights of the model's shapes (traced, not compiled: seconds saved)
    shapes = jax.eval_shape(lambda: init_model_params(config, jax.random.key(2)))
    save_hf(config, jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(s.dtype), shapes), out)
    for f in tok.iterdir():
        shutil.copy(f, out / f.name)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MACRO_PATHS = {"MODEL_DIR": "run", "EVAL_OUTPUT_DIR": "eval"}


def tiny(cmd: DocumentedCommand, data: dict, work: pathlib.Path) -> tuple[list[list[str]], dict]:
    """(argv per process, environment) for `cmd` with sizes and paths swapped; nothing else changes."""
    module, args = cmd.argv[0], list(cmd.argv[1:])
    out, env, processes = [], {k: v for k, v in cmd.env}, 1
    microbatches = 1
    for a in args:
        m = re.match(r"--gin\.NUM_MICROBATCHES=(\d+)", a)
        if m:
            microbatches = min(int(m[1]), 4)
    distributed = False
    for a in args:
        key, _, value = a.partition("=")
        macro = key[len("--gin."):] if key.startswith("--gin.") else None
        if key == "--gin_file" and re.search(r"models/(opt_(?!tiny)\w+|llama3_\w+)\.gin$", value):
            a = re.sub(r"models/\w+\.gin$", "models/opt_tiny.gin", value)
            a = f"--gin_file={a}"
        elif macro in MACRO_PATHS:
            a = f"{key}={work / MACRO_PATHS[macro]}"
        elif macro == "INITIAL_CHECKPOINT_PATH":  # without a model file the directory is the model: a Llama one
            has_model = any(re.search(r"models/\w+\.gin$", x) for x in args if x.startswith("--gin_file"))
            a = f"{key}={data['opt'] if has_model else data['llama']}"
        elif macro == "CHECKPOINT_PATH":
            a = f"{key}={data['mini']}"
        elif macro == "DATA_DIR":
            a = f"{key}={data['data_dir']}"
        elif macro == "NIV2_DATA_DIR":
            a = f"{key}={data['niv2']}"
        elif macro in ("TOKENIZER_DIR", "OPT_TOKENIZER_DIR"):
            chat = "--gin.USE_CHAT_TEMPLATE=True" in args  # OPT's BPE has no chat template
            a = f"{key}={data['chat_tokenizer' if chat else 'tokenizer']}"
        elif macro in ("BATCH_SIZE", "TRAIN_STEPS", "TASK_FEATURE_LENGTHS", "MESH_SHAPE"):
            continue  # set below
        elif key in ("--distributed", "--multiprocess_gpu", "--coordinator_address", "--num_processes",
                     "--process_id", "--cpu_collectives"):
            distributed = True
            continue
        elif key == "--num_devices":
            a = "--num_devices=8"
        elif key in ("--hf_dir", "--out_dir") and "=" in a and module == "optiml_jax.convert":
            a = f"{key}={data['mini'] if key == '--hf_dir' else work / 'converted'}"
        elif key == "--out_dir" and "=" in a:
            a = f"{key}={work / 'out'}"
        out.append(a)
    # positional "--flag value" forms (convert, tasks leakage): the value follows the flag
    fixed = []
    for i, a in enumerate(out):
        prev = out[i - 1] if i else ""
        if prev in ("--hf_dir",) and module == "optiml_jax.convert":
            a = str(data["mini"])
        elif prev == "--metaseq_path":  # a part file keeps its name: the tiny set is named like the release
            a = str(data["metaseq"] / pathlib.Path(a).name) if a.endswith(".pt") else str(data["metaseq"])
        elif prev == "--tokenizer_dir":
            a = str(MINI_TOKENIZER)
        elif prev == "--out_dir":
            a = str(work / ("converted" if module == "optiml_jax.convert" else "out"))
        fixed.append(a)
    out = fixed
    if module in ("optiml_jax.train", "optiml_jax.plan"):
        out += [f"--gin.BATCH_SIZE={8 * microbatches}", "--gin.TASK_FEATURE_LENGTHS={'targets': 128}"]
        if any("fsdp_tensor" in a or "MESH_SHAPE" in a for a in cmd.argv):
            out.append("--gin.MESH_SHAPE=(1, 4, 2)")
    if module == "optiml_jax.train":
        out += ["--gin.TRAIN_STEPS=2", "--gin.CHECKPOINT_PERIOD=2", "--no_progress"]
        if not any(a.startswith("--gin.MODEL_DIR") for a in out):
            out.append(f"--gin.MODEL_DIR={work / 'run'}")
        if any("quickstart" in a for a in out):  # the in-training evaluation, at its smallest
            out += ["--gin.EvalCallback.max_examples=1", "--gin.EvalCallback.max_new_tokens=2",
                    "--gin.eval_mixture_stream.max_examples_per_task=2", "--gin.EvaluationConfig.eval_batches=1"]
    if module == "optiml_jax.eval":
        out += ["--gin.MAX_EXAMPLES=1", "--gin.MAX_NEW_TOKENS=2"]
    if module == "optiml_jax.infer":
        out += ["--gin.MAX_NEW_TOKENS=3"]
    if distributed or cmd.wrapper in ("srun", "gcloud", "for"):
        processes = 2
    if processes == 1:
        return [[module, *out]], env
    port = _free_port()
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    return [[module, *out, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
             "--cpu_collectives=gloo"] for i in range(2)], env


def _kind(cmd: DocumentedCommand) -> str:
    module = cmd.module.split(".", 1)[1]
    return f"{module} {cmd.argv[1]}" if module == "tasks" else module


def config_check(argv: list[str]) -> None:
    """The command's parser, gin setup and data check: everything it does before device work."""
    from optiml_jax.cli import gin_setup

    module, args = argv[0], argv[1:]
    if module == "optiml_jax.train":
        from optiml_jax.cli import train

        ns, bindings = train.parse_args(args)
        gin_setup.setup(ns, bindings, command="train")
        gin_setup.check_training_data()
    elif module == "optiml_jax.eval":
        import argparse

        from optiml_jax.cli import eval as eval_cli, launch

        eval_cli.register_configurables()
        p = argparse.ArgumentParser()
        gin_setup.add_gin_arguments(p)
        launch.add_launcher_arguments(p)
        ns, bindings = gin_setup.parse_command_line(p, args)
        gin_setup.setup(ns, bindings, default_files=["runs/eval.gin"], command="eval")
        eval_cli.check_settings_apply(bindings)
    elif module == "optiml_jax.plan":
        from optiml_jax.cli import plan

        ns, bindings = plan.parse_args(args)
        gin_setup.apply_data_flags(ns)
        kwargs = plan.configure(ns.gin_file, bindings, gin_setup.search_paths_of(ns))
        assert kwargs["model_config"] is not None, argv
    elif module == "optiml_jax.tasks":
        from optiml_jax.cli.tasks import build_parser, setup

        ns, bindings = gin_setup.parse_command_line(build_parser()[0], args)
        setup(ns, bindings)
    else:
        raise AssertionError(f"documented command not covered by this test: {' '.join(argv)}")


def test_the_documentation_has_the_commands_this_test_knows():
    modules = {c.module for c in COMMANDS}
    assert {"optiml_jax.train", "optiml_jax.tasks", "optiml_jax.eval", "optiml_jax.infer", "optiml_jax.convert",
            "optiml_jax.plan"} <= modules, modules
    sources = {c.source.split(":")[0] for c in COMMANDS}
    assert {"README.md", "tasks/README.md", "gin/runs/finetune.gin", "gin/runs/eval.gin", "gin/runs/infer.gin",
            "gin/bench/opt_iml_bench.gin", "gin/mixtures/README.md"} <= sources, sources
    assert len(COMMANDS) >= 25
    wrapped = {c.wrapper for c in COMMANDS}
    assert {"gcloud", "srun"} <= wrapped  # the TPU pod and SLURM commands are found inside their wrappers
    placeholders = [str(c) for c in COMMANDS if any("..." in a or a.startswith("[") for a in c.argv)]
    assert not placeholders, f"a documented command must run as written: {placeholders}"


def test_every_documented_command_passes_its_configuration_check(test_data, tmp_path, capsys, monkeypatch):
    from optiml_jax.cli import convert, infer
    from optiml_jax.cli.tasks import main as tasks_main

    monkeypatch.chdir(REPO)
    ran, checked = [], []
    for i, cmd in enumerate(COMMANDS):
        work = tmp_path / f"c{i}"
        argvs, _ = tiny(cmd, test_data, work)
        argv = argvs[0]
        gin.clear_config()
        kind = _kind(cmd)
        try:
            if kind in ("tasks list", "tasks inspect"):
                assert tasks_main(argv[1:] + (["--no_catalog"] if kind == "tasks list" else [])) == 0
                ran.append(cmd)
            elif kind == "infer":
                assert infer.main(argv[1:]) == 0
                ran.append(cmd)
            elif kind == "convert":
                assert convert.main(argv[1:]) == 0 and (work / "converted").is_dir()
                ran.append(cmd)
            else:
                config_check(argv)
                checked.append(cmd)
        except BaseException as e:  # noqa: BLE001 (name the command that failed)
            raise AssertionError(f"{cmd}\n  rewritten: {' '.join(argv)}\n  failed: {type(e).__name__}: {e}") from e
    out = capsys.readouterr().out
    assert ">>> Reverse the word: cat" in out and "mini_bench_train" in out
    assert len(ran) >= 5 and len(checked) >= 20


def test_an_edited_command_that_no_longer_runs_fails_the_check(test_data, tmp_path, monkeypatch):
    """The check is not a formality: the README's one-host command with a misspelled model file, or with a mixture
    name that does not exist, fails it."""
    monkeypatch.chdir(REPO)
    readme = (REPO / "README.md").read_text()
    one_host = "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train \\\n  --gin.INITIAL_CHECKPOINT_PATH=/models/opt-1.3b"
    assert one_host in readme
    for edit, error in ((one_host.replace("mini_bench_train", "mini_bench_trian"), "mini_bench_trian"),
                        (one_host + " --gin.LEARNIG_RATE=0.1", "did you mean LEARNING_RATE")):
        copy = tmp_path / "README.md"
        copy.write_text(readme.replace(one_host, edit))
        [cmd] = [c for c in commands_in_file(copy, tmp_path) if "opt_1_3b.gin" in " ".join(c.argv)
                 and c.module == "optiml_jax.train"]
        gin.clear_config()
        with pytest.raises(Exception, match=error):
            config_check(tiny(cmd, test_data, tmp_path / "w")[0][0])


def _run_for_real(cmd: DocumentedCommand, data: dict, work: pathlib.Path) -> None:
    if any(a.startswith("--gin.DATA_DIR") for a in cmd.argv) and not SHARED.is_dir():
        pytest.skip(f"{cmd.source}: reads the benchmark files of ../shared/data, absent here")
    argvs, env = tiny(cmd, data, work)
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for argv in argvs]
    for argv, p in zip(argvs, procs):
        try:
            out, _ = p.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, f"{cmd}\n  ran: {' '.join(argv)}\n  exit {p.returncode}:\n{out[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("cmd", [c for c in COMMANDS if _kind(c) not in RUN_IN_DEFAULT_SET], ids=str)
def test_every_documented_command_runs(cmd, test_data, tmp_path):
    _run_for_real(cmd, test_data, tmp_path)
