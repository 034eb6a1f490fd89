"""`opt_config` / `llama_config`: the gin-facing factories for `OPTConfig` / `LlamaConfig` (the model package stays
gin-free); `model_config_from_checkpoint`: the run files' default model, read from INITIAL_CHECKPOINT_PATH's own
`config.json` (a Hugging Face directory, a converter Orbax dir or a training run), so pointing at a checkpoint is
enough to fine-tune it; a model file (`gin/models/*.gin`, binding `train.model_config`) overrides it and must then
agree with the checkpoint (`check_matches_checkpoint`).

Each factory's keywords are explicit in its signature (`with_execution_keywords`, one list for all three) rather
than `**overrides`, so a misspelt gin binding such as `opt_config.dropout = 0.1` is rejected by gin with the file
and line, instead of being swallowed.
"""

from __future__ import annotations

import functools
import inspect

from optiml_jax.models import LlamaConfig, OPTConfig

# The execution choices every factory takes as keywords (gin/runs/train.gin binds them to COMPUTE_DTYPE,
# DROPOUT_RATE, SCAN_LAYERS, REMAT_POLICY, ATTENTION_BACKEND); the dropout default is each factory's own.
EXECUTION_DEFAULTS = dict(dtype="bfloat16", dropout_rate=None, scan_layers=False, remat_policy="none",
                          attention_backend="reference", attention_block_sizes=None)
OPT_ARCHITECTURE_KEYWORDS = ("vocab_size", "max_position_embeddings", "num_layers", "hidden_size", "num_heads",
                             "ffn_dim", "bos_token_id", "eos_token_id", "pad_token_id")
LLAMA_ARCHITECTURE_KEYWORDS = OPT_ARCHITECTURE_KEYWORDS + ("num_kv_heads",)


def with_execution_keywords(dropout_rate: float, architecture: tuple[str, ...] = ()):
    """Gives `fn(first, *, execution, architecture)` an explicit keyword-only signature: the execution choices of
    `EXECUTION_DEFAULTS` (with this `dropout_rate` default), then `architecture` fields defaulting to None.

    Why a signature rather than `**overrides`: gin validates each binding against it, so a misspelt binding such
    as `opt_config.dropout = 0.1` is rejected with the file and line instead of being swallowed; one list here
    keeps the three factories' keywords identical. `fn` receives the execution choices as one dict (dropout as a
    float, block sizes as a tuple) and the architecture fields that were set."""
    def decorate(fn):
        first = next(iter(inspect.signature(fn).parameters.values()))
        keywords = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                      default=dropout_rate if name == "dropout_rate" else default)
                    for name, default in EXECUTION_DEFAULTS.items()]
        keywords += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in architecture]
        signature = inspect.Signature([first, *keywords], return_annotation=inspect.signature(fn).return_annotation)

        @functools.wraps(fn)
        def factory(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            chosen = dict(bound.arguments)
            execution = {name: chosen.pop(name) for name in EXECUTION_DEFAULTS}
            execution["dropout_rate"] = float(execution["dropout_rate"])
            if execution["attention_block_sizes"] is None:
                del execution["attention_block_sizes"]
            else:
                execution["attention_block_sizes"] = tuple(execution["attention_block_sizes"])
            fields = {name: chosen.pop(name) for name in architecture}
            return fn(*chosen.values(), execution=execution,
                      architecture={name: value for name, value in fields.items() if value is not None})

        del factory.__wrapped__  # nothing that unwraps decorators may see the `execution`/`architecture` keywords
        factory.__signature__ = signature
        return factory

    return decorate


@with_execution_keywords(dropout_rate=0.1, architecture=OPT_ARCHITECTURE_KEYWORDS)
def opt_config(size: str = "125m", *, execution: dict, architecture: dict) -> OPTConfig:
    """A preset size with execution choices; bf16 compute with float32 parameters by default.

    A published size carries its hub config's special ids, 'tiny' none (`OPTConfig.preset`); a run stamps its
    vocabulary's ids into the config it writes (`with_vocabulary_ids`), so set the ids only for use without one."""
    return OPTConfig.preset(size, **execution, **architecture)


@with_execution_keywords(dropout_rate=0.0, architecture=LLAMA_ARCHITECTURE_KEYWORDS)
def llama_config(size: str = "1b", *, execution: dict, architecture: dict) -> LlamaConfig:
    """A Llama-family preset ('tiny', '1b' = Llama-3.2-1B, '8b' = Llama-3-8B) with execution choices.

    The token ids say which ids of the tokenizer the model treats as bos/eos/pad (generation stops at eos);
    set them when the tokenizer is not Llama 3's (e.g. the mini-benchmark's OPT-style BPE: 2, 2, 1)."""
    return LlamaConfig.preset(size, **execution, **architecture)


@with_execution_keywords(dropout_rate=0.1)
def model_config_from_checkpoint(checkpoint_path=None, *, execution: dict, architecture: dict):
    """The architecture the checkpoint at `checkpoint_path` records (config.json of a Hugging Face OPT / Llama /
    Mistral / Qwen2 directory, of a converter Orbax dir, or a run's model_config.json), with the run's execution
    choices (gin/runs/train.gin binds them to DROPOUT_RATE, COMPUTE_DTYPE, SCAN_LAYERS, REMAT_POLICY,
    ATTENTION_BACKEND). Why the default of `train.model_config`: a user who points INITIAL_CHECKPOINT_PATH at a
    transformers directory should not have to restate its shape in a model file (and cannot get it wrong)."""
    from optiml_jax.training.errors import ConfigValueError

    del architecture  # none: the checkpoint's
    if checkpoint_path is None:
        raise ConfigValueError("no model to train: give a model file (--gin_file=models/<name>.gin, which binds "
                               "train.model_config) or a checkpoint directory to fine-tune "
                               "(--gin.INITIAL_CHECKPOINT_PATH=<a Hugging Face directory with config.json>)")
    saved = _saved_config(checkpoint_path)
    if saved is None:
        raise ConfigValueError(f"INITIAL_CHECKPOINT_PATH = {str(checkpoint_path)!r} records no architecture (no "
                               "config.json / model_config.json): give a model file (--gin_file=models/<name>.gin)")
    return saved.replace(**execution)


def _saved_config(checkpoint_path):
    """The architecture a checkpoint records in JSON (None for one that records none, such as a metaseq .pt whose
    config is inside the pickle: not read here)."""
    from optiml_jax.checkpoints.resolve import resolve

    ref = resolve(checkpoint_path, setting="INITIAL_CHECKPOINT_PATH")
    return None if ref.kind == "metaseq" else ref.saved_config()


def _config_file(checkpoint_path) -> str:
    from optiml_jax.checkpoints.resolve import MODEL_CONFIG_FILE, resolve

    ref = resolve(checkpoint_path, setting="INITIAL_CHECKPOINT_PATH")
    return str(ref.run_dir / MODEL_CONFIG_FILE) if ref.kind == "training_run" else str(ref.path / "config.json")


# What a model file must agree on with the checkpoint's config: the shapes of the parameters, and for the Llama family
# the positional and normalisation constants the checkpoint was trained with.
CHECKPOINT_MATCH_FIELDS = {
    "opt": ("hidden_size", "num_layers", "num_heads", "ffn_dim", "vocab_size", "max_position_embeddings",
            "word_embed_proj_dim", "do_layer_norm_before", "enable_bias", "layer_norm_elementwise_affine"),
    "llama": ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "vocab_size", "head_dim",
              "attention_bias", "attention_out_bias", "mlp_bias", "tie_word_embeddings", "rope_theta", "rope_type",
              "rms_norm_eps"),
}


def check_matches_checkpoint(model_config, checkpoint_path, origin: str = "train.model_config") -> None:
    """A configured model (a model file) that disagrees with INITIAL_CHECKPOINT_PATH's recorded config is an error
    before any device work and before MODEL_DIR is touched: one line naming each field with both values, the model
    file (`origin`) and the checkpoint's config file. Checkpoints without a JSON config (metaseq) are checked when
    their weights are read."""
    from optiml_jax.training.errors import ConfigValueError

    if checkpoint_path is None:
        return
    saved = _saved_config(checkpoint_path)
    if saved is None:
        return
    where = _config_file(checkpoint_path)
    if type(saved) is not type(model_config):
        raise ConfigValueError(f"{origin} configures a {type(model_config).family!r}-family model but "
                               f"INITIAL_CHECKPOINT_PATH's {where} holds a {type(saved).family!r}-family model "
                               "(drop the model file to take the model from the checkpoint)")
    diffs = [f"{f}: {getattr(model_config, f)!r} in {origin}, {getattr(saved, f)!r} in {where}"
             for f in CHECKPOINT_MATCH_FIELDS[type(saved).family] if getattr(model_config, f) != getattr(saved, f)]
    if diffs:
        raise ConfigValueError(f"the model file disagrees with INITIAL_CHECKPOINT_PATH's config: {'; '.join(diffs)} "
                               "(drop the model file to take the model from the checkpoint, or fix the one at fault)")


ARCHITECTURE_FIELDS = ("hidden_size", "num_layers", "num_heads", "ffn_dim", "vocab_size", "max_position_embeddings",
                       "word_embed_proj_dim", "do_layer_norm_before", "enable_bias",
                       "layer_norm_elementwise_affine")


LLAMA_ARCHITECTURE_FIELDS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "vocab_size",
                             "head_dim", "attention_bias", "attention_out_bias", "mlp_bias", "tie_word_embeddings")


def check_same_architecture(expected: OPTConfig | LlamaConfig, found: OPTConfig | LlamaConfig, where: str) -> None:
    """Parameters from `where` must fit the configured model; list every mismatching field."""
    if type(expected) is not type(found):
        raise ValueError(f"checkpoint {where} holds a {type(found).family!r}-family model, the configured model is "
                         f"{type(expected).family!r}-family")
    fields = ARCHITECTURE_FIELDS if isinstance(expected, OPTConfig) else LLAMA_ARCHITECTURE_FIELDS
    diffs = [f"{f}: configured {getattr(expected, f)!r}, checkpoint {getattr(found, f)!r}"
             for f in fields if getattr(expected, f) != getattr(found, f)]
    if diffs:
        raise ValueError(f"checkpoint {where} does not match the configured model: " + "; ".join(diffs))


def check_vocabulary_fits(stream, model_config, mixture_or_task_name: str) -> None:
    """A mixture whose vocabulary has more ids than the model's embedding rows is an error before any device work
    (its tokens would index past the embedding): one line naming the vocabulary and `vocab_size`. Streams without
    `special_ids` are not checked (the synthetic stream has them: its own ids and vocab_size)."""
    from optiml_jax.training.errors import ConfigValueError

    ids = getattr(stream, "special_ids", None)
    if ids is None or ids.vocab_size is None or ids.vocab_size <= model_config.vocab_size:
        return
    vocabulary = getattr(stream, "vocabulary", None)
    where = (getattr(vocabulary, "path", None) or repr(vocabulary) if vocabulary is not None
             else f"{type(stream).__name__}'s own ids")
    raise ConfigValueError(f"MIXTURE_OR_TASK_NAME = {mixture_or_task_name!r}: its tasks' vocabulary ({where}) has "
                           f"{ids.vocab_size} ids but the model's vocab_size is {model_config.vocab_size} (gin: "
                           "train.model_config): use the model's own tokenizer or a model with vocab_size >= "
                           f"{ids.vocab_size}")


def with_vocabulary_ids(model_config, stream):
    """The model config with the special ids of the run's vocabulary (`stream.special_ids`), so model_config.json,
    the in-training evaluation and export carry the ids the run trains in (`config_with_ids`). The synthetic stream
    reports its own ids; a stream without `special_ids` changes nothing (the config keeps what it has, None
    included: uses that need an id then fail naming it)."""
    ids = getattr(stream, "special_ids", None)
    return model_config if ids is None else config_with_ids(model_config, ids, "the run's vocabulary's")


def config_with_ids(model_config, ids, source: str = "the tokenizer's"):
    """`model_config` with the special ids of `ids` (a `SpecialIds`): they fill a config without ids (the 'tiny'
    presets, a config.json or metaseq checkpoint that lacks them) and replace a preset's or checkpoint's hub ids when
    they differ (logged as a warning naming `source`). A tokenizer without a pad token gives `pad_token_id=None`
    (its pad is the eos fallback, which must not mark eos tokens as padding in the model's unpacked inputs), for
    either family; an OPT config (one eos id) names a family without bos by its eos (the first input token)."""
    opt = isinstance(model_config, OPTConfig)
    eos = ids.eos_id if opt or len(ids.eos) == 1 else tuple(ids.eos)
    bos = ids.eos_id if opt and ids.bos is None else ids.bos
    new = dict(bos_token_id=bos, eos_token_id=eos, pad_token_id=None if ids.pad_from_eos else ids.pad)
    changed = {k: (getattr(model_config, k), v) for k, v in new.items()
               if getattr(model_config, k) is not None and getattr(model_config, k) != v}
    if changed:
        import logging

        logging.getLogger(__name__).warning(
            "model config special ids replaced by %s (the ids it trains or runs in): %s", source,
            ", ".join(f"{k} {old!r} -> {v!r}" for k, (old, v) in changed.items()))
    return model_config.replace(**new)
