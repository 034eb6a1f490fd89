"""lm-evaluation-harness backend: registration, request handling, and agreement with the harness's HF backend."""

import json
import os
import subprocess
import sys

import pytest

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

import optiml_jax.evaluation.lm_eval_adapter as adapter  # noqa: E402


def test_plain_lm_eval_finds_the_backend_without_importing_it_first():
    """The installed optiml_jax_lm_eval.pth registers 'optiml_jax' lazily in a fresh interpreter."""
    code = (
        "import sys\n"
        "from lm_eval.api.registry import get_model\n"
        "import lm_eval.models\n"
        "assert 'optiml_jax.evaluation.lm_eval_adapter' not in sys.modules, 'adapter imported eagerly'\n"
        "assert 'jax' not in sys.modules, 'jax imported before the model was asked for'\n"
        "cls = get_model('optiml_jax')\n"
        "print(cls.__module__ + ':' + cls.__name__, get_model('optiml-jax') is cls, get_model('hf').__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        "lm-eval did not find 'optiml_jax' in a fresh interpreter; is optiml_jax_lm_eval.pth installed next to "
        "the package (pip install -e .)?\n" + proc.stderr[-3000:])
    assert proc.stdout.split() == ["optiml_jax.evaluation.lm_eval_adapter:OptimlJaxLM", "True", "HFLM"]


def _ll(ctx, cont, i=0):
    return Instance(request_type="loglikelihood", doc={}, arguments=(ctx, cont), idx=i)


def test_registered_and_builtin_backends_still_resolve():
    from lm_eval.api.registry import get_model

    assert get_model("optiml_jax") is adapter.OptimlJaxLM
    assert get_model("hf").__name__ == "HFLM"


def test_loglikelihood_matches_model_scores_and_handles_empty_context(tiny_model, mini_vocab):
    lm = adapter.OptimlJaxLM(model=tiny_model)
    reqs = [_ll("Question: is it red?\nAnswer:", " yes"), _ll("Question: is it red?\nAnswer:", " no", 1),
            _ll("Question: is it red?\nAnswer: ", "yes", 2), _ll("", "hello world", 3)]
    out = lm.loglikelihood(reqs)
    ctx = [2] + mini_vocab.encode("Question: is it red?\nAnswer:")
    (row,) = tiny_model.score_token_options([ctx], [[mini_vocab.encode(" yes"), mini_vocab.encode(" no")]])
    assert out[0][0] == pytest.approx(row[0][0], rel=1e-6) and out[1][0] == pytest.approx(row[1][0], rel=1e-6)
    assert out[2][0] == pytest.approx(out[0][0], rel=1e-6)  # trailing context space moves to the continuation
    (empty,) = tiny_model.score_token_options([[2]], [[mini_vocab.encode("hello world")]])
    assert out[3][0] == pytest.approx(empty[0][0], rel=1e-6)


def test_generate_until_stops_at_stop_strings(tiny_model):
    lm = adapter.OptimlJaxLM(model=tiny_model)
    req = Instance(request_type="generate_until", doc={}, arguments=("Copy: abc\nAnswer:", {"max_gen_toks": 6}), idx=0)
    (full,) = lm.generate_until([req])
    assert full == tiny_model.generate_texts(["Copy: abc\nAnswer:"], max_new_tokens=6)[0]
    if len(full) > 1:
        stop = full[1:3] if len(full) > 2 else full[1]
        req2 = Instance(request_type="generate_until", doc={},
                        arguments=("Copy: abc\nAnswer:", {"max_gen_toks": 6, "until": [stop]}), idx=0)
        assert lm.generate_until([req2])[0] == full.split(stop, 1)[0]


def _write_mc_task(folder):
    words = ["apple", "dog", "pear", "cat", "plum", "cow", "fig", "owl"]
    rows = [{"question": f"Is {w} a fruit or an animal?", "choices": ["fruit", "animal", "rock"], "label": i % 2}
            for i, w in enumerate(words)]
    (folder / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "tiny_mc.yaml").write_text(
        "task: optiml_tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'data.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}\\nAnswer:"\ndoc_to_target: "{{label}}"\ndoc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n")


@pytest.mark.slow
def test_agrees_with_hf_backend_on_exported_weights(hf_export, tmp_path, monkeypatch):
    pytest.importorskip("accelerate")  # lm-eval's HF backend imports it
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    _write_mc_task(tmp_path)
    tm = TaskManager(include_path=str(tmp_path))
    runs = {}
    for name, args in (("optiml_jax", f"checkpoint={hf_export}"), ("hf", f"pretrained={hf_export},dtype=float32")):
        r = lm_eval.simple_evaluate(model=name, model_args=args, tasks=["optiml_tiny_mc"], task_manager=tm,
                                    device="cpu", batch_size=4, log_samples=True)
        samples = sorted(r["samples"]["optiml_tiny_mc"], key=lambda s: s["doc_id"])
        runs[name] = ([[float(x[0]) for x in s["filtered_resps"]] for s in samples],
                      r["results"]["optiml_tiny_mc"]["acc,none"])
    ours, theirs = runs["optiml_jax"], runs["hf"]
    assert len(ours[0]) == 8
    for a, b in zip(ours[0], theirs[0]):
        assert a == pytest.approx(b, abs=1e-3)
    assert ours[1] == theirs[1]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["lm_eval", "optiml_jax.cli.lm_eval"])
def test_lm_eval_command_runs_our_backend(hf_export, tmp_path, launcher):
    """`lm_eval run --model optiml_jax ...` as a user types it (`python -m lm_eval` = the console script), and
    our wrapper."""
    _write_mc_task(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", launcher, "run", "--model", "optiml_jax",
         "--model_args", f"checkpoint={hf_export}", "--tasks", "optiml_tiny_mc", "--include_path", str(tmp_path),
         "--device", "cpu", "--output_path", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list(out.rglob("results*.json"))
    assert results and "optiml_tiny_mc" in json.loads(results[0].read_text())["results"]


def test_apply_chat_template_with_a_tokenizer_without_one_is_one_clear_error(tiny_model):
    plain = adapter.OptimlJaxLM(model=tiny_model)  # the mini-benchmark's OPT BPE has no chat template
    with pytest.raises(ValueError, match="--apply_chat_template: the tokenizer .* has no chat template"):
        plain.apply_chat_template([{"role": "user", "content": "Is it bad?"}])


@pytest.mark.slow  # ~30 s on the 2-core machine: a tokenizer trained here and transformers' import
def test_apply_chat_template_renders_as_transformers_and_stops_at_the_end_of_turn(tmp_path):
    """lm-eval's own --apply_chat_template switch works through our backend: the rendered history is what
    transformers renders for the same tokenizer directory, and the end-of-turn token becomes a stop id."""
    import jax

    transformers = pytest.importorskip("transformers")
    from optiml_jax.evaluation import DecoderOnlyModel
    from optiml_jax.models import LlamaConfig, init_model_params
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer
    from optiml_jax.vocabularies import HFTokenizerVocabulary
    from optiml_jax.vocabularies.special_ids import special_ids_of

    vocab = HFTokenizerVocabulary(write_family_tokenizer(tmp_path / "tok", "llama3", ["Is it good?", "yes no"],
                                                         bpe_size=300))
    ids = special_ids_of(vocab)
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, hidden_size=32, num_heads=2, num_kv_heads=1,
                                ffn_dim=64, num_layers=1, max_position_embeddings=256, dtype="float32",
                                bos_token_id=ids.bos, eos_token_id=ids.eos_id)
    lm = adapter.OptimlJaxLM(model=DecoderOnlyModel(config, init_model_params(config, jax.random.key(0)), vocab))
    history = [{"role": "user", "content": "Is it good?"}, {"role": "assistant", "content": "yes"},
               {"role": "user", "content": "Is it bad?"}]
    theirs = transformers.AutoTokenizer.from_pretrained(str(vocab.path))
    assert lm.apply_chat_template(history) == theirs.apply_chat_template(history, tokenize=False,
                                                                        add_generation_prompt=True)
    assert lm.chat_template(True) == theirs.chat_template and lm.chat_template(False) is None
    eot = theirs.convert_tokens_to_ids("<|eot_id|>")
    assert eot in lm.model.special_ids.eos and ids.eos_id in lm.model.special_ids.eos
    # the rendered prompt starts with the bos text, so tok_encode adds no second bos
    assert lm.tok_encode(lm.apply_chat_template(history))[:2].count(ids.bos) == 1
