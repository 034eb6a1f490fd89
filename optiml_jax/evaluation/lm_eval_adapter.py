"""lm-evaluation-harness (0.4.13) backend for our JAX OPT: `--model optiml_jax`.

Importing this module registers the model (`lm_eval.api.registry.register_model`). lm-eval 0.4.13 has no
plugin discovery for models (its CLI only knows `lm_eval.models.MODEL_MAPPING`; `--include_path` is for
tasks), so the CLI is reached through our wrapper, which imports this module and then runs lm-eval's own
CLI with the same arguments:

    python -m optiml_jax.cli.lm_eval run --model optiml_jax \
        --model_args checkpoint=/path/ckpt,tokenizer=/path/tok --tasks hellaswag --include_path my_tasks/
    # Python API
    import optiml_jax.evaluation.lm_eval_adapter, lm_eval
    lm_eval.simple_evaluate(model="optiml_jax", model_args="checkpoint=/path/ckpt", tasks=[...])

Model args: `checkpoint` (anything `DecoderOnlyModel.from_checkpoint` reads), `tokenizer` (dir with vocab.json +
merges.txt; default: the checkpoint dir), `batch_size` (prompts per compiled call), `max_length` (default:
the model's max positions), `max_gen_toks` (default 256).

Requests are tokenized exactly as the harness's Hugging Face backend does (context through
`TemplateLM._encode_pair`, the vocabulary's bos prepended as its tokenizer does: `</s>` for OPT, nothing for a
family without a bos; end of text = the vocabulary's eos; the model's `special_ids`), so per-request
log-likelihoods agree with `--model hf` on the same exported weights. Requests that share a context are scored in one group:
the context is encoded once (KV-cache prefix sharing, see `scoring.score_shared_prompts`).
`--apply_chat_template` (lm-eval's own switch; `--fewshot_as_multiturn` too) renders each request's chat history
through the tokenizer's chat template (`vocabularies.chat_template`, as transformers renders it), and generation then
also stops at the template's end-of-turn token; a tokenizer without a chat template is refused with one line.
Truncation: when context + continuation exceed `max_length`, the context is cut from the left so the
whole sequence fits (the HF backend keeps one token more, which it never feeds).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import lm_eval.models  # noqa: F401  (registers the built-in backends first: get_model only imports them when empty)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model


@register_model("optiml_jax", "optiml-jax")
class OptimlJaxLM(TemplateLM):
    """An `DecoderOnlyModel` behind lm-eval's `loglikelihood`, `loglikelihood_rolling` and `generate_until`."""

    def __init__(self, checkpoint: str | None = None, tokenizer: str | None = None, batch_size: int | str = 8,
                 max_length: int | None = None, max_gen_toks: int = 256, model: Any = None, **kwargs):
        super().__init__()
        from optiml_jax.evaluation.vocabulary import resolve_tokenizer
        from optiml_jax.evaluation.model import DecoderOnlyModel

        kwargs.pop("device", None)  # CPU/accelerator placement is JAX's; accepted for CLI compatibility
        kwargs.pop("max_batch_size", None)
        if kwargs:
            raise ValueError(f"optiml_jax lm-eval model: unknown model_args {sorted(kwargs)}")
        bs = 8 if batch_size in (None, "auto") or str(batch_size).startswith("auto") else int(batch_size)
        if model is not None:
            self.model = model
        else:
            if checkpoint is None:
                raise ValueError("optiml_jax lm-eval model needs model_args checkpoint=<dir>")
            vocab = resolve_tokenizer(tokenizer, checkpoint)
            self.model = DecoderOnlyModel.from_checkpoint(checkpoint, vocab, score_batch_size=bs, predict_batch_size=bs,
                                                  max_new_tokens=int(max_gen_toks))
        self._max_length = int(max_length or self.model.config.max_position_embeddings)
        self.max_gen_toks = int(max_gen_toks)

    # ---- tokenization (mirrors the HF backend with OPT's tokenizer) -----------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.model.special_ids.eos_id

    @property
    def prefix_token_id(self) -> int:
        """What a context-free request is scored after: the bos, else the eos (the HF backend's rule)."""
        ids = self.model.special_ids
        return ids.bos if ids.bos is not None else ids.eos_id

    @property
    def _bos_text(self) -> str | None:
        bos = self.model.special_ids.bos
        tokenizer = getattr(self.model.vocabulary, "tokenizer", None)
        return None if bos is None or tokenizer is None else tokenizer.id_to_token(bos)

    @property
    def max_length(self) -> int:
        return self._max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        ids = list(self.model.vocabulary.encode(string))
        bos = self.model.special_ids.bos
        if bos is None:
            return ids
        text = self._bos_text
        add = add_special_tokens if add_special_tokens is not None else not (text and string.startswith(text))
        return [bos] + ids if add else ids

    def tok_decode(self, tokens: list[int]) -> str:
        return self.model.vocabulary.decode(list(tokens))

    # ---- chat templates (lm-eval's --apply_chat_template) ---------------------------------------------------
    def _chat(self):
        if getattr(self, "_chat_template", None) is None:
            from optiml_jax.vocabularies.chat_template import ChatTemplate, ChatTemplateError

            try:
                self._chat_template = ChatTemplate.from_vocabulary(self.model.vocabulary)
            except ChatTemplateError:
                raise ValueError(f"lm-eval --apply_chat_template: the tokenizer "
                                 f"{getattr(self.model.vocabulary, 'path', self.model.vocabulary)} has no chat "
                                 "template (tokenizer_config.json 'chat_template'): drop --apply_chat_template or "
                                 "pass model_args tokenizer=<a directory with one>") from None
            # the assistant's turn ends at the template's end-of-turn token: generation stops there too
            self.model.special_ids = self.model.special_ids.with_stop_ids(self._chat_template.end_of_turn_ids)
        return self._chat_template

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The template's source (lm-eval records it in the results and fingerprints caches with it)."""
        return self._chat().template if chat_template else None

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.model.vocabulary, "path", "optiml_jax")).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self._chat().render(chat_history, add_generation_prompt=add_generation_prompt)

    # ---- requests -------------------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: [((context, continuation), context_ids, continuation_ids)] -> [(logprob, is_greedy)]."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        prompts: dict[tuple, list[int]] = {}
        for i, (_, ctx, cont) in enumerate(requests):
            if not cont:
                raise ValueError(f"request {i}: empty continuation")
            cont = cont[-self.max_length:]
            room = max(self.max_length - len(cont), 1)
            prompt = list(ctx)[-room:] if ctx else [self.prefix_token_id]
            key = tuple(prompt)
            prompts[key] = prompt
            groups[key].append(i)
        keys = list(groups)
        options = [[list(requests[i][2])[-self.max_length:] for i in groups[k]] for k in keys]
        scored = self.model.score_token_options([prompts[k] for k in keys], options)
        out: list[Any] = [None] * len(requests)
        for k, row in zip(keys, scored):
            for i, (lp, greedy) in zip(groups[k], row):
                out[i] = (lp, greedy)
                if getattr(self, "cache_hook", None) is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], (lp, greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        results = []
        for (string,) in [req.args for req in requests]:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(string, add_special_tokens=False), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)]
            scored = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows])
            results.append(sum(lp for lp, _ in scored))
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled) generation, cut at the first `until` string."""
        import jax

        out: list[Any] = [None] * len(requests)
        by_kwargs: dict[str, list[int]] = defaultdict(list)
        parsed = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
            do_sample = bool(gen_kwargs.pop("do_sample", False))
            temperature = float(gen_kwargs.pop("temperature", 0.0)) if do_sample else 0.0
            parsed.append((context, until, max_new, temperature))
            by_kwargs[repr((max_new, temperature))].append(i)
        for key, idx in by_kwargs.items():
            _, _, max_new, temperature = parsed[idx[0]]
            room = max(self.max_length - max_new, 1)
            prompts = [self.tok_encode(parsed[i][0])[-room:] for i in idx]
            conts = self.model.generate_token_batches(prompts, max_new_tokens=max_new, temperature=temperature,
                                                      rng=jax.random.key(0) if temperature > 0 else None)
            for i, c in zip(idx, conts):
                text = self.tok_decode(c)
                for stop in parsed[i][1]:
                    if stop and stop in text:
                        text = text.split(stop, 1)[0]
                out[i] = text
                if getattr(self, "cache_hook", None) is not None:
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out
