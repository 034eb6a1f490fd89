"""A tokenizer's chat template, rendered and tokenized as transformers does, with the assistant's tokens marked.

Why: with `USE_CHAT_TEMPLATE = True` (gin/runs/train.gin, eval.gin, infer.gin) every instruction example is a
conversation (user turn = the paper's formatted instruction and input, assistant turn = the target; k-shot
demonstrations are earlier turns), trained with the loss on the assistant's tokens only, as TRL's
`assistant_only_loss`, MaxText's `sft_train_on_completion_only` and Levanter's `mask_user_turns` do, and
evaluated with the prompt ending in the template's generation prompt.

Rendering is transformers' `apply_chat_template(messages, tokenize=False)`: the same sandboxed jinja2 environment
(`trim_blocks`, `lstrip_blocks`, `loopcontrols`, `tojson`, `raise_exception`, `strftime_now`, `{% generation %}`)
with the tokenizer's special tokens as variables. Tokenization is of the whole rendered text, without added special
tokens (`apply_chat_template(..., tokenize=True)`), so the ids are transformers'. Which tokens are the assistant's
is read from character offsets: a message's span is the text its turn adds to the rendering of the turns before it
(an assistant turn's span starts after the generation prompt, so the role header is not trained on and the
end-of-turn token as the template renders it, `<|eot_id|>`, `<|im_end|>\\n`, `</s>`, is); a token belongs to the
span its first character is in.

Pure Python (jinja2 + the `tokenizers` object of the vocabulary): no TensorFlow, SeqIO or gin.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any, Sequence

MACRO = "USE_CHAT_TEMPLATE"


class ChatTemplateError(ValueError):
    """A tokenizer without a usable chat template; the message names its directory and the gin macro."""


@functools.lru_cache(maxsize=16)
def _compiled(template: str):
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """`{% generation %}...{% endgeneration %}` renders its body (transformers tracks assistant spans with it)."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(template: str, messages: Sequence[dict], *, add_generation_prompt: bool = False,
                         **variables: Any) -> str:
    """Render a Hugging Face chat template the way `transformers` does (see the module docstring)."""
    chat = []
    for message in messages:
        if not isinstance(message, dict):
            raise TypeError(f"chat messages must be dicts, got {message!r}")
        chat.append({k: v for k, v in message.items() if v is not None})  # as transformers normalises them
    variables.setdefault("tools", None)
    variables.setdefault("documents", None)
    return _compiled(template).render(messages=chat, add_generation_prompt=add_generation_prompt, **variables)


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


class ChatTemplate:
    """The chat template of one tokenizer directory (`from_vocabulary`), rendering and encoding conversations.

    Args:
      template: the jinja2 source (tokenizer_config.json's `chat_template`).
      tokenizer: a `tokenizers.Tokenizer` (ids with character offsets).
      variables: template variables (the special-token strings: `bos_token`, `eos_token`, ...).
      name: what error messages call it (the tokenizer directory).
    """

    def __init__(self, template: str, tokenizer: Any, variables: dict[str, Any] | None = None, name: str = "?"):
        self.template, self.tokenizer, self.name = template, tokenizer, name
        self.variables = dict(variables or {})

    @classmethod
    def from_vocabulary(cls, vocabulary: Any) -> "ChatTemplate":
        """The chat template of a run's vocabulary; a tokenizer without one (OPT's BPE) is refused, naming its
        directory and the macro that asked for it."""
        template = getattr(vocabulary, "chat_template", None)
        where = getattr(vocabulary, "path", None) or repr(vocabulary)
        if not template or not hasattr(vocabulary, "tokenizer"):
            raise ChatTemplateError(
                f"{MACRO} = True, but the tokenizer {where} has no chat template (no 'chat_template' in its "
                f"tokenizer_config.json, no chat_template.jinja): use a tokenizer that has one (TOKENIZER_DIR) or "
                f"set {MACRO} = False")
        return cls(template, vocabulary.tokenizer, getattr(vocabulary, "special_tokens", {}), str(where))

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r})"

    # ---- text ------------------------------------------------------------------------------------------------
    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        return render_chat_template(self.template, messages, add_generation_prompt=add_generation_prompt,
                                    **self.variables)

    def prompt_text(self, messages: Sequence[dict]) -> str:
        """The conversation so far (ending with a user turn) followed by the generation prompt: what a model
        continues with the assistant's answer."""
        return self.render(messages, add_generation_prompt=True)

    def assistant_turn_text(self, content: str, prompt_messages: Sequence[dict] = (user("?"),)) -> str:
        """The text an assistant turn with `content` adds after the generation prompt (content and end-of-turn,
        as rendered): what rank classification scores as an option."""
        messages = list(prompt_messages)
        start, end = self.render(messages, True), self.render(messages + [assistant(content)])
        self._check_prefix(start, end, len(messages))
        return end[len(start):]

    def encode_text(self, text: str) -> list[int]:
        """Ids of rendered text, no special tokens added (the template renders them)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @functools.cached_property
    def end_of_turn_ids(self) -> tuple[int, ...]:
        """The special token(s) closing an assistant turn (`<|eot_id|>`, `<|im_end|>`, `</s>`): generation stops
        there too. Read from the template: the added tokens in the text after the assistant's content."""
        marker = "Zq7"
        tail = self.assistant_turn_text(marker)
        tail = tail[tail.index(marker) + len(marker):] if marker in tail else tail
        special = {t.content for t in self.tokenizer.get_added_tokens_decoder().values() if t.special}
        enc = self.tokenizer.encode(tail, add_special_tokens=False)
        return tuple(i for i, tok in zip(enc.ids, enc.tokens) if tok in special)[:1]

    # ---- conversations with label masks ----------------------------------------------------------------------
    def _check_prefix(self, before: str, after: str, turn: int) -> None:
        if not after.startswith(before):
            raise ChatTemplateError(
                f"the chat template of {self.name} does not render a conversation turn by turn (turn {turn} changes "
                f"the text before it), so the assistant's tokens cannot be told apart: {MACRO} needs such a template")

    def spans(self, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
        """(rendered text, [start, end) character span of each message). An assistant message's span starts after
        the generation prompt; a user (or system) message's covers its whole turn."""
        messages = list(messages)
        full = self.render(messages)
        spans, prev = [], ""
        for i, m in enumerate(messages):
            start = len(prev)
            if m.get("role") == "assistant":
                head = self.render(messages[:i], True)
                self._check_prefix(prev, head, i)
                start = len(head)
            upto = self.render(messages[:i + 1])
            self._check_prefix(prev if m.get("role") != "assistant" else head, upto, i)
            spans.append((start, len(upto)))
            prev = upto
        self._check_prefix(prev, full, len(messages))
        return full, spans

    def encode_conversations(self, conversations: Sequence[tuple[Sequence[dict], Sequence[bool]]]
                             ) -> list[tuple[list[int], list[float]]]:
        """(ids, loss weights) of each (messages, labelled) pair: the whole rendering tokenized at once, weight 1
        on the tokens of the labelled messages' spans (normally the assistant's), 0 elsewhere."""
        rendered = [self.spans(messages) for messages, _ in conversations]
        encodings = self.tokenizer.encode_batch([text for text, _ in rendered], add_special_tokens=False)
        out = []
        for (text, spans), (_, labelled), enc in zip(rendered, conversations, encodings):
            marked = [(a, b) for (a, b), on in zip(spans, labelled) if on]
            weights = [1.0 if any(a <= s < b for a, b in marked) else 0.0 for s, _ in enc.offsets]
            out.append((list(enc.ids), weights))
        return out

    def encode_conversation(self, messages: Sequence[dict], labelled: Sequence[bool] | None = None
                            ) -> tuple[list[int], list[float]]:
        """One conversation; `labelled` defaults to the assistant messages."""
        if labelled is None:
            labelled = [m.get("role") == "assistant" for m in messages]
        return self.encode_conversations([(messages, labelled)])[0]


__all__ = ["ChatTemplate", "ChatTemplateError", "MACRO", "render_chat_template", "user", "assistant"]
