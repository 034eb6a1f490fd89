"""`DecoderOnlyModel`: T5X's decoder-only model contract (`loss_fn`, `score_batch`, `predict_batch_with_aux`) over a
decoder of any family (OPT, Llama, Mistral, Qwen2), plus text-level helpers that the evaluator, the CLIs and
the lm-eval adapter share.

Why one class: every consumer (trainer-time evaluation, `python -m optiml_jax.eval`, `python -m
optiml_jax.infer`, lm-evaluation-harness, SeqIO's Evaluator) must tokenize, truncate and score the same
way, or numbers stop being comparable.

Tokenization convention (same as the data path and Hugging Face's tokenizers): a prompt is
`[bos] + encode(source)` (OPT: bos = `</s>`; a family without a bos, Qwen2: `encode(source)`); a target/option is
`encode(target)`, scored as a continuation of the prompt; generation stops at any of the eos ids. The ids are the
vocabulary's (`DecoderOnlyModel.special_ids`, `optiml_jax.vocabularies.SpecialIds`), or the model config's when there is
no vocabulary. Prompts too long for the model are truncated from the left (the start of few-shot prompts goes first).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from optiml_jax.evaluation import prediction, scoring
from optiml_jax.models import ModelConfig, model_for
from optiml_jax.vocabularies.special_ids import SpecialIds, special_ids_of, special_ids_of_config



class DecoderOnlyModel:
    """A decoder-only model for evaluation (T5X `BaseModel` style).

    Args:
      config, params: from `optiml_jax.checkpoints.load_params` (trainer checkpoint or HF dir) or a live train state.
      vocabulary: anything with `encode(str) -> list[int]` and `decode(list[int]) -> str` (an `OPTVocabulary`).
      mesh: optional `jax.sharding.Mesh`; batches are split over all its axes, parameters replicated.
      score_batch_size: prompts per compiled scoring call (each with all its options).
      predict_batch_size: prompts per generation call.
      max_new_tokens, temperature: generation defaults (paper: greedy, 256 tokens).
      special_ids: bos / eos (stop) / pad ids; default: the vocabulary's, else the model config's.
      stop_ids: more generation stop ids (a Hugging Face `generation_config.json`'s eos list).
      chat_template: a `ChatTemplate` (`USE_CHAT_TEMPLATE`): sources given to `encode_prompt` are then the template's
        rendered text (its own bos, no other added), and generation also stops at its end-of-turn token.
    """

    def __init__(self, config: ModelConfig, params: Any, vocabulary: Any = None, mesh: Mesh | None = None, *,
                 score_batch_size: int = 8, predict_batch_size: int = 8,
                 max_new_tokens: int = prediction.DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0,
                 special_ids: SpecialIds | None = None, stop_ids: Sequence[int] = (), chat_template: Any = None):
        self.config, params = scoring.prepare_params(config, params)
        if mesh is not None:
            params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
        else:
            params = jax.tree.map(jnp.asarray, params)
        self.params = params
        self.vocabulary = vocabulary
        self.checkpoint_step: int | None = None  # a training run's step, set by `from_checkpoint`
        if special_ids is None:
            special_ids = special_ids_of(vocabulary) if vocabulary is not None else special_ids_of_config(config)
        self.chat_template = chat_template
        if chat_template is not None:
            stop_ids = tuple(stop_ids) + tuple(chat_template.end_of_turn_ids)
        self.special_ids = special_ids.with_stop_ids(stop_ids)
        if self.special_ids.vocab_size is not None and self.special_ids.vocab_size > config.vocab_size:
            raise ValueError(f"the vocabulary has {self.special_ids.vocab_size} ids but the model's embedding only "
                             f"{config.vocab_size} (vocab_size): wrong tokenizer for this checkpoint?")
        self.mesh = mesh
        self.score_batch_size = int(score_batch_size)
        self.predict_batch_size = int(predict_batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)

    @classmethod
    def from_checkpoint(cls, checkpoint_path: str | os.PathLike, vocabulary: Any = None, **kwargs) -> "DecoderOnlyModel":
        """Load an Orbax checkpoint (trainer/converter) or a Hugging Face directory (OPT, Llama, Mistral, Qwen2; its
        `generation_config.json` eos ids, if any, stop generation too)."""
        from optiml_jax.checkpoints.families import generation_stop_ids
        from optiml_jax.checkpoints.resolve import load_checkpoint_and_step

        mesh = kwargs.get("mesh")  # where the parameters go: a metaseq checkpoint is streamed straight there
        sharding = (NamedSharding(mesh, PartitionSpec()) if mesh is not None
                    else jax.sharding.SingleDeviceSharding(jax.devices()[0]))
        config, params, step = load_checkpoint_and_step(checkpoint_path, device_sharding=sharding)
        kwargs.setdefault("stop_ids", generation_stop_ids(checkpoint_path))
        model = cls(config, params, vocabulary, **kwargs)
        model.checkpoint_step = step  # the training step read (a run that is training may have saved newer ones)
        return model

    # ---- T5X BaseModel contract -------------------------------------------------------------------------
    def loss_fn(self, params: Any, batch: dict[str, np.ndarray], dropout_rng: jax.Array | None = None):
        """Mean token cross-entropy over `decoder_loss_weights` -> (loss, {"loss", "num_tokens"})."""
        del dropout_rng  # evaluation is deterministic
        params = self._prepared(params)
        scores, _, count = scoring.score_token_batch(self.config, params, batch, mesh=self.mesh,
                                                     pad_id=self.special_ids.pad)
        total = float(np.sum(count))
        loss = -float(np.sum(scores)) / max(total, 1.0)
        return loss, {"loss": loss, "num_tokens": total}

    def score_batch(self, params: Any, batch: dict[str, np.ndarray], return_intermediates: bool = False):
        """Summed log-likelihood of the weighted target tokens per row (T5X semantics).

        With `return_intermediates`, also {"is_greedy": bool [B], "num_tokens": float [B]}.
        """
        params = self._prepared(params)
        scores, greedy, count = scoring.score_token_batch(self.config, params, batch, mesh=self.mesh,
                                                          pad_id=self.special_ids.pad)
        if return_intermediates:
            return scores, {"is_greedy": greedy, "num_tokens": count}
        return scores

    def predict_batch_with_aux(self, params: Any, batch: dict[str, np.ndarray], rng: jax.Array | None = None, *,
                               max_new_tokens: int | None = None, temperature: float | None = None):
        """Decode continuations of the prompts in `batch["decoder_input_tokens"]` (non-pad tokens of each row,
        left- or right-padded). Returns (tokens [B, max_new_tokens] padded with the pad id after the stop id,
        {"lengths": [B] tokens before the stop id})."""
        if "decoder_input_tokens" not in batch:
            raise ValueError(f"predict batch lacks 'decoder_input_tokens'; has {sorted(batch)}")
        params = self._prepared(params)
        rows = np.asarray(batch["decoder_input_tokens"])
        prompts = [[int(t) for t in row if t != self.special_ids.pad] for row in rows]
        conts, raw = prediction.generate_tokens(
            self.config, params, prompts, max_new_tokens=max_new_tokens or self.max_new_tokens,
            temperature=self.temperature if temperature is None else temperature, rng=rng, mesh=self.mesh,
            special_ids=self.special_ids)
        return raw, {"lengths": np.array([len(c) for c in conts], np.int32)}

    # ---- token-level helpers ------------------------------------------------------------------------------
    def encode_prompt(self, source: str, reserve: int = 0) -> list[int]:
        """`[bos] + encode(source)` (no bos for a family without one), left-truncated so that `reserve` more
        tokens still fit the model. With a chat template, `source` is rendered template text: its ids as they are."""
        if self.chat_template is not None:
            ids = self.chat_template.encode_text(source)
        else:
            ids = self.special_ids.prompt_prefix + list(self._vocab().encode(source))
        room = self.config.max_position_embeddings - reserve
        if room < 1:
            raise ValueError(f"reserve={reserve} leaves no room in max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        return ids if len(ids) <= room else ids[len(ids) - room:]

    def score_token_options(self, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]]
                            ) -> list[list[tuple[float, bool]]]:
        """(summed log-prob, is_greedy) of every option of every prompt; prompt encoded once per prompt."""
        results: list[Any] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self.score_batch_size):
            chunk = order[start:start + self.score_batch_size]
            out = scoring.score_shared_prompts(self.config, self.params, [prompts[i] for i in chunk],
                                               [options[i] for i in chunk], mesh=self.mesh,
                                               min_rows=self.score_batch_size, pad_id=self.special_ids.pad)
            for i, r in zip(chunk, out):
                results[i] = r
        return results

    def generate_token_batches(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int | None = None,
                               temperature: float | None = None, rng: jax.Array | None = None) -> list[list[int]]:
        """Continuations (cut at the first stop id) of token prompts, in batches of `predict_batch_size` sorted by length."""
        max_new = max_new_tokens or self.max_new_tokens
        temp = self.temperature if temperature is None else temperature
        if temp > 0 and rng is None:
            rng = jax.random.key(0)
        results: list[Any] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for n, start in enumerate(range(0, len(order), self.predict_batch_size)):
            chunk = order[start:start + self.predict_batch_size]
            step_rng = None if rng is None else jax.random.fold_in(rng, n)
            conts, _ = prediction.generate_tokens(self.config, self.params, [prompts[i] for i in chunk],
                                                  max_new_tokens=max_new, temperature=temp, rng=step_rng,
                                                  mesh=self.mesh, min_rows=self.predict_batch_size,
                                                  special_ids=self.special_ids)
            for i, c in zip(chunk, conts):
                results[i] = c
        return results

    # ---- text-level helpers -------------------------------------------------------------------------------
    def score_options(self, sources: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[dict[str, Any]]]:
        """Log-likelihood of each option text after each source text -> [{"logprob", "is_greedy", "num_tokens"}]."""
        vocab = self._vocab()
        option_ids = [[list(vocab.encode(o)) for o in opts] for opts in options]
        for i, opts in enumerate(option_ids):
            if any(len(o) == 0 for o in opts):
                raise ValueError(f"example {i}: an option encodes to no tokens: {options[i]!r}")
        prompts = [self.encode_prompt(s, reserve=max(len(o) for o in opts)) for s, opts in zip(sources, option_ids)]
        scored = self.score_token_options(prompts, option_ids)
        return [[{"logprob": lp, "is_greedy": g, "num_tokens": len(o)} for (lp, g), o in zip(row, ids)]
                for row, ids in zip(scored, option_ids)]

    def generate_texts(self, sources: Sequence[str], *, max_new_tokens: int | None = None,
                       temperature: float | None = None, rng: jax.Array | None = None) -> list[str]:
        """Greedy (or sampled) continuations of source texts, decoded to text."""
        max_new = max_new_tokens or self.max_new_tokens
        prompts = [self.encode_prompt(s, reserve=max_new) for s in sources]
        conts = self.generate_token_batches(prompts, max_new_tokens=max_new, temperature=temperature, rng=rng)
        return [self._vocab().decode(c) for c in conts]

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """Full-sequence logits (debugging and parity tests)."""
        return np.asarray(model_for(self.config).apply({"params": self.params}, jnp.asarray(tokens, jnp.int32)))

    def _prepared(self, params: Any) -> Any:
        """The model's own params, or caller-given ones (e.g. a live train state) in the eval layout."""
        if params is None or params is self.params:
            return self.params
        return scoring.prepare_params(self.config, params)[1]

    def _vocab(self):
        if self.vocabulary is None:
            raise ValueError("this DecoderOnlyModel has no vocabulary: pass one (e.g. OPTVocabulary(dir)) for text input")
        return self.vocabulary
