"""PromptSource `templates.yaml` files without the promptsource package.

A safe YAML loader maps the custom tags `!Template` / `!TemplateMetadata` to plain data; templates render with
jinja2 under PromptSource's conventions (`Environment(loader=BaseLoader)`, globals `zip`/`enumerate`, filters
`choice` (random pick, seeded here for determinism), `most_frequent`, `highlight`; "|||" in example values is
protected while splitting prompt ||| target; variables are truncated to 2048 characters).
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import random
from typing import Any

import jinja2
import yaml

from optiml_jax.paths import is_url, user_path
from optiml_jax.sources.raw_examples import SourceDataError

TEXT_VAR_LENGTH = 2048
_PIPE_PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"


class _TemplateYamlLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Template` and `!TemplateMetadata` mappings into dicts (no object construction)."""


def _tagged_mapping(tag):
    def construct(loader, node):
        value = loader.construct_mapping(node, deep=True)
        value["__tag__"] = tag
        return value
    return construct


_TemplateYamlLoader.add_constructor("!Template", _tagged_mapping("Template"))
_TemplateYamlLoader.add_constructor("!TemplateMetadata", _tagged_mapping("TemplateMetadata"))


@dataclasses.dataclass(frozen=True)
class PSTemplate:
    id: str
    name: str
    jinja: str
    answer_choices: str | None
    original_task: bool | None
    choices_in_prompt: bool | None
    metrics: tuple[str, ...]
    dataset: str  # "<dataset>[/<subset>]"
    file: str


def dataset_key(path: pathlib.Path, root: pathlib.Path) -> str:
    return str(path.parent.relative_to(root)).replace("\\", "/")


def load_templates_file(path: str | pathlib.Path, root: str | pathlib.Path | None = None) -> list[PSTemplate]:
    """Parses one templates.yaml; errors name the file and template."""
    path = user_path(path, "PROMPTSOURCE_TEMPLATES_DIR")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateYamlLoader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError:
        raise SourceDataError("templates file does not exist", file=str(path)) from None
    except yaml.YAMLError as e:
        raise SourceDataError(f"broken YAML: {e}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("templates"), dict):
        raise SourceDataError("templates.yaml must have a 'templates' mapping", file=str(path))
    key = dataset_key(path, user_path(root, "PROMPTSOURCE_TEMPLATES_DIR")) if root else str(data.get("dataset", path.parent.name))
    out = []
    for tid, t in data["templates"].items():
        if not isinstance(t, dict) or "jinja" not in t or not isinstance(t["jinja"], str):
            raise SourceDataError("template lacks a 'jinja' string", file=str(path), task=key, example=str(tid))
        meta = t.get("metadata") or {}
        out.append(PSTemplate(
            id=str(t.get("id", tid)), name=str(t.get("name", tid)), jinja=t["jinja"],
            answer_choices=t.get("answer_choices"), original_task=meta.get("original_task"),
            choices_in_prompt=meta.get("choices_in_prompt"), metrics=tuple(meta.get("metrics") or ()),
            dataset=key, file=str(path)))
    return out


def templates_files(root: str | pathlib.Path) -> list[pathlib.Path]:
    root = user_path(root, "PROMPTSOURCE_TEMPLATES_DIR")  # local or a bucket (optiml_jax.paths)
    if not root.is_dir():
        raise SourceDataError("PromptSource templates directory does not exist (set PROMPTSOURCE_TEMPLATES_DIR)",
                              file=str(root))
    if is_url(root):  # epath has no recursive glob on a bucket: walk it
        return sorted(top / "templates.yaml" for top, _dirs, files in root.walk() if "templates.yaml" in files)
    return sorted(pathlib.Path(root).rglob("templates.yaml"))


def load_all_templates(root: str | pathlib.Path) -> dict[str, list[PSTemplate]]:
    """{"dataset[/subset]": [templates]} for every templates.yaml under `root`."""
    base = user_path(root, "PROMPTSOURCE_TEMPLATES_DIR")
    return {dataset_key(p, base): load_templates_file(p, root) for p in templates_files(root)}


def _most_frequent(items):
    if not items:
        return None
    counts = collections.Counter(items).most_common()
    return [c for c, n in counts if n == counts[0][1]]


def make_environment(rng: random.Random) -> jinja2.Environment:
    """PromptSource's jinja environment; the `choice` filter draws from `rng` (deterministic per reader)."""
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    env.globals.update(zip=zip, enumerate=enumerate)
    env.filters["highlight"] = lambda s: s
    env.filters["choice"] = lambda choices: rng.choice(list(choices))
    env.filters["most_frequent"] = _most_frequent
    return env


class TemplateRenderer:
    """Compiles templates once and applies them to examples, PromptSource-style."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.env = make_environment(self.rng)
        self._cache: dict[str, Any] = {}

    def _compile(self, source: str):
        if source not in self._cache:
            self._cache[source] = self.env.from_string(source)
        return self._cache[source]

    @staticmethod
    def _protect(example: dict) -> dict:
        return {k: v.replace("|||", _PIPE_PROTECTOR) if isinstance(v, str) else v for k, v in example.items()}

    def answer_choices(self, template: PSTemplate, example: dict) -> list[str] | None:
        if template.answer_choices is None:
            return None
        rendered = self._compile(template.answer_choices).render(**self._protect(example))
        return [c.strip().replace(_PIPE_PROTECTOR, "|||") for c in rendered.split("|||")]

    def apply(self, template: PSTemplate, example: dict) -> tuple[str, str, list[str]]:
        """(prompt, target, answer_choices); raises `SourceDataError` naming file/template when rendering fails
        or the result is not 'prompt ||| target' with a non-empty target."""
        if "answer_choices" in example:
            raise SourceDataError("example contains the reserved key 'answer_choices'", file=template.file,
                                  task=template.dataset, example=template.name)
        jinja_src = template.jinja.replace("}}", f" | string | truncate({TEXT_VAR_LENGTH}) }}}}")
        try:
            choices = self.answer_choices(template, example)
            ctx = self._protect(example)
            ctx["answer_choices"] = choices
            rendered = self._compile(jinja_src).render(**ctx)
        except Exception as e:  # noqa: BLE001 - any jinja/runtime error becomes a named data error
            raise SourceDataError(f"template {template.name!r} failed to render: {type(e).__name__}: {e}",
                                  file=template.file, task=template.dataset, example=str(example.get("id", "?"))) from e
        parts = [p.replace(_PIPE_PROTECTOR, "|||").strip() for p in rendered.split("|||")]
        if len(parts) < 2 or not parts[1]:
            raise SourceDataError(f"template {template.name!r} rendered no target (empty or missing '|||' part)",
                                  file=template.file, task=template.dataset, example=str(example.get("id", "?")))
        return parts[0], parts[1], choices or []
