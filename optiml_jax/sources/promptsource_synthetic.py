"""Synthetic examples for PromptSource templates, inferred from the Jinja AST.

Why: the P3 example data is not available here, yet every original-task template must be shown to render.
The walker records how each free variable is used (attribute/key access -> dict, integer index or `for` loop
-> list, comparison with a number / `int` filter / use as an index -> number) and `synthesize_example` builds a
value of that shape. `render_report` renders every template and lists those that still fail, with the reason.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from jinja2 import nodes

from optiml_jax.sources.promptsource_templates import PSTemplate, TemplateRenderer
from optiml_jax.sources.raw_examples import SourceDataError

_NUMERIC_FILTERS = {"int", "float", "round", "abs"}


@dataclasses.dataclass
class Shape:
    kind: str = "leaf"  # leaf | dict | list
    numeric: bool = False
    constants: list = dataclasses.field(default_factory=list)  # literals it is compared with
    children: dict = dataclasses.field(default_factory=dict)
    item: "Shape | None" = None

    def child(self, key: str) -> "Shape":
        self.kind = "dict"
        return self.children.setdefault(key, Shape())

    def element(self) -> "Shape":
        if self.kind != "dict":
            self.kind = "list"
        if self.item is None:
            self.item = Shape()
        return self.item


class _Walker:
    def __init__(self, globals_: frozenset = frozenset()):
        self.roots: dict[str, Shape] = {}
        self.globals = globals_

    def shape(self, node, scope) -> Shape | None:
        if isinstance(node, nodes.Name):
            if node.name in scope:
                return scope[node.name]
            if node.name in ("answer_choices", "loop") or node.name in self.globals:
                return None
            return self.roots.setdefault(node.name, Shape())
        if isinstance(node, nodes.Getattr):
            base = self.shape(node.node, scope)
            if base is None or node.attr in ("items", "keys", "values", "split", "strip", "lower", "upper",
                                             "replace", "join", "startswith", "endswith", "capitalize", "title"):
                return None
            return base.child(node.attr)
        if isinstance(node, nodes.Getitem):
            base = self.shape(node.node, scope)
            self.visit(node.arg, scope)
            if base is None:
                return None
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return base.child(node.arg.value)
            if isinstance(node.arg, nodes.Slice):
                base.element()
                return base
            return base.element()
        if isinstance(node, nodes.Filter) and node.name in ("list", "unique", "sort", "reverse"):
            return self.shape(node.node, scope) if node.node is not None else None
        return None

    def mark_numeric(self, node, scope):
        s = self.shape(node, scope)
        if s is not None and s.kind == "leaf":
            s.numeric = True

    def visit(self, node, scope):
        if node is None:
            return
        if isinstance(node, nodes.For):
            self._visit_for(node, scope)
            return
        if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            self.visit(node.node, scope)
            s = self.shape(node.node, scope)
            scope[node.target.name] = s if s is not None else Shape()
            return
        if isinstance(node, nodes.Getitem):
            base = node.node
            if isinstance(base, nodes.Name) and base.name == "answer_choices" or not (
                    isinstance(node.arg, nodes.Const)):
                if not isinstance(node.arg, (nodes.Const, nodes.Slice)):
                    self.mark_numeric(node.arg, scope)
        if isinstance(node, nodes.Filter) and node.name in _NUMERIC_FILTERS and node.node is not None:
            self.mark_numeric(node.node, scope)
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            # a method call (`x.split()`, `choices.label.index(key)`): the base is a value, not a dict
            self.shape(node.node.node, scope)
            self.visit(node.node.node, scope)
            for a in node.args:
                self.visit(a, scope)
            return
        if isinstance(node, nodes.Compare):
            self._note_comparison(node, scope)
        if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod)):
            for o in (node.left, node.right):
                if isinstance(o, nodes.Const) and isinstance(o.value, (int, float)):
                    self.mark_numeric(node.left, scope)
                    self.mark_numeric(node.right, scope)
        self.shape(node, scope) if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)) else None
        for child in node.iter_child_nodes():
            self.visit(child, scope)

    def _visit_for(self, node, scope):
        """A loop: its variable(s) get the element shape of what it iterates, in a scope of the loop's own."""
        it = self.shape(node.iter, scope)
        self.visit(node.iter, scope)
        inner = dict(scope)
        if isinstance(node.target, nodes.Name):
            inner[node.target.name] = it.element() if it is not None else Shape()
        elif isinstance(node.target, nodes.Tuple):
            for t in node.target.items:
                if isinstance(t, nodes.Name):
                    inner[t.name] = Shape()
        for n in node.body + node.else_:
            self.visit(n, inner)
        if node.test is not None:
            self.visit(node.test, inner)

    def _note_comparison(self, node, scope):
        """`x == 'a'`, `x in ['a', 'b']`: the constants become values x may take; comparing with a number makes
        every operand numeric."""
        operands = [node.expr] + [op.expr for op in node.ops]
        for o in operands:
            s = self.shape(o, scope)
            if s is not None:
                for c in operands:
                    if isinstance(c, nodes.Const) and c.value not in s.constants:
                        s.constants.append(c.value)
                    if isinstance(c, (nodes.List, nodes.Tuple)):
                        s.constants.extend(i.value for i in c.items if isinstance(i, nodes.Const))
        if any(isinstance(o, nodes.Const) and isinstance(o.value, (int, float)) and not isinstance(o.value, bool)
               for o in operands):
            for o in operands:
                self.mark_numeric(o, scope)


def infer_fields(renderer: TemplateRenderer, template: PSTemplate) -> dict[str, Shape]:
    """{free variable: Shape} over the template's jinja and answer_choices."""
    w = _Walker(frozenset(renderer.env.globals))
    for src in (template.jinja, template.answer_choices):
        if src:
            w.visit(renderer.env.parse(src), {})
    return w.roots


def _value(shape: Shape, name: str, number: int, uniform: bool) -> Any:
    if shape.kind == "dict":
        return {k: _value(v, k, number, uniform) for k, v in shape.children.items()}
    if shape.kind == "list":
        item = shape.item or Shape()
        return [_value(item, f"{name}{i}", number + (0 if uniform else i), uniform) for i in range(5)]
    if uniform and not shape.numeric and not shape.constants:
        return "A"  # one shared string: satisfies `labels.index(answerKey)`-style membership between fields
    if shape.constants:  # alternate between the literals it is compared with and free text
        candidates = shape.constants + [number if shape.numeric else ("A" if uniform else f"synthetic {name} text")]
        return candidates[number % len(candidates)]
    if shape.numeric:
        return number
    return f"synthetic {name} text"


def synthesize_example(fields: dict[str, Shape], number: int = 0, uniform: bool = False) -> dict[str, Any]:
    """One synthetic example; `number` picks the literal/number variant, `uniform` gives every free-text leaf
    the same string (for templates that look one field up inside another)."""
    return {name: _value(s, name, number, uniform) for name, s in fields.items()}


def render_report(templates: dict[str, list[PSTemplate]], original_only: bool = True) -> dict[str, Any]:
    """Renders each (original-task) template on synthetic examples; returns counts and the failures with reasons."""
    renderer = TemplateRenderer(seed=0)
    rendered, failures = 0, []
    for key, tpls in sorted(templates.items()):
        for t in tpls:
            if original_only and not t.original_task:
                continue
            fields = infer_fields(renderer, t)
            last_err = None
            for number, uniform in [(n, u) for u in (False, True) for n in range(4)]:
                try:
                    renderer.apply(t, synthesize_example(fields, number, uniform))
                    rendered += 1
                    last_err = None
                    break
                except SourceDataError as e:
                    last_err = str(e.__cause__ or e)
            if last_err is not None:
                failures.append({"dataset": key, "template": t.name, "file": t.file, "reason": last_err})
    return {"rendered": rendered, "failed": len(failures), "failures": failures}


if __name__ == "__main__":  # python -m optiml_jax.sources.promptsource_synthetic <templates_dir>
    import json
    import sys

    from optiml_jax.sources.promptsource_templates import load_all_templates
    report = render_report(load_all_templates(pathlib.Path(sys.argv[1])))
    print(json.dumps(report, indent=1))
