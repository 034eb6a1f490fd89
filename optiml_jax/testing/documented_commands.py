"""Every command the documentation shows, extracted from the files themselves (so an edit cannot drift from its test).

Sources: README.md, tasks/README.md, docs/*.md and gin/**/README.md (fenced `bash` blocks, and inline code spans that
are a whole `python -m optiml_jax...` command), and the header comment of every gin file (`#   python -m ...` lines,
with `\\` continuations). A command is an argv list starting at the module (`optiml_jax.train`, ...), with shell
continuations joined, comments dropped, `VAR="..."` assignments expanded, and wrappers peeled off (`cd x &&`,
`srun`, `VAR=value` prefixes, `gcloud ... --command="..."`, `for ...; do ... & done`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex


@dataclasses.dataclass(frozen=True)
class DocumentedCommand:
    source: str  # file (relative to the repository root) and line
    argv: tuple[str, ...]  # from the module on: ("optiml_jax.train", "--gin_file=...", ...)
    env: tuple[tuple[str, str], ...] = ()  # VAR=value prefixes (XLA_FLAGS=...)
    wrapper: str = ""  # "srun", "gcloud", "for" when the documentation wraps the command

    @property
    def module(self) -> str:
        return self.argv[0]

    def __str__(self) -> str:
        return f"{self.source}: python -m {' '.join(self.argv)}"


def documentation_files(repo: pathlib.Path) -> list[pathlib.Path]:
    files = [repo / "README.md", repo / "tasks" / "README.md"]
    files += sorted((repo / "docs").glob("*.md")) + sorted((repo / "gin").rglob("README.md"))
    files += sorted((repo / "gin").rglob("*.gin"))
    return [f for f in files if f.is_file()]


def commands_in_file(path: pathlib.Path, repo: pathlib.Path) -> list[DocumentedCommand]:
    rel = str(path.relative_to(repo))
    text = path.read_text()
    if path.suffix == ".gin":
        return _gin_header_commands(text, rel)
    out = []
    for m in re.finditer(r"```bash\n(.*?)```", text, re.S):
        line_no = text[: m.start()].count("\n") + 2
        out += _block_commands(m.group(1), rel, line_no)
    for m in re.finditer(r"`(python -m optiml_jax[^`]*)`", text):
        # a whole command (with arguments), not a mention of a module such as `python -m optiml_jax.<command>`
        if len(m.group(1).split()) > 3 and not re.search(r"[<{|]|\.\.\.", m.group(1)):
            out += _line_commands(m.group(1), f"{rel}:{text[: m.start()].count(chr(10)) + 1}", {})
    return out


def documented_commands(repo: pathlib.Path) -> list[DocumentedCommand]:
    return [c for f in documentation_files(repo) for c in commands_in_file(f, repo)]


def _gin_header_commands(text: str, rel: str) -> list[DocumentedCommand]:
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:])
    return _block_commands("\n".join(header), rel, 1)


def _join_open_quotes(text: str) -> str:
    """Lines inside an open double quote (gcloud's --command="...) join the line that opened it."""
    out, pending = [], ""
    for line in text.splitlines():
        pending = f"{pending} {line.strip()}" if pending else line
        if pending.count('"') % 2 == 0:
            out.append(pending)
            pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


def _block_commands(block: str, rel: str, first_line: int) -> list[DocumentedCommand]:
    joined = _join_open_quotes(re.sub(r"\\\n\s*", " ", block))
    variables: dict[str, str] = {}
    out = []
    for i, line in enumerate(joined.splitlines()):
        assignment = re.fullmatch(r'(\w+)="(.*)"', line.strip())
        if assignment:  # FT="--gin_file=... ..." then `python -m optiml_jax.plan $FT ...`
            variables[assignment[1]] = assignment[2]
            continue
        out += _line_commands(line, f"{rel}:{first_line + i}", variables)
    return out


def _line_commands(line: str, source: str, variables: dict[str, str]) -> list[DocumentedCommand]:
    for name, value in variables.items():
        line = line.replace(f"${name}", value)
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: a multi-line wrapper, handled where it closes
        return []
    for w in words:
        if w.startswith("--command="):  # gcloud ... --command="cd repo && python -m ..."
            return [dataclasses.replace(c, wrapper="gcloud") for c in _line_commands(w[len("--command="):], source, {})]
    out = []
    for i, w in enumerate(words):
        if w == "-m" and i > 0 and words[i - 1] == "python" and i + 1 < len(words) \
                and words[i + 1].startswith("optiml_jax"):
            rest = words[i + 1:]
            for stop in ("&", "&&", ";", "|"):
                if stop in rest:
                    rest = rest[:rest.index(stop)]
            env = []
            j = i - 2
            while j >= 0 and re.fullmatch(r"[A-Z_]+=.*", words[j]):
                env.insert(0, tuple(words[j].split("=", 1)))
                j -= 1
            wrapper = "srun" if "srun" in words[:i] else ("for" if "for" in words[:i] else "")
            out.append(DocumentedCommand(source, tuple(rest), tuple(env), wrapper))
    return out
