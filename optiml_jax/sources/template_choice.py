"""Which prompt template an example gets: the paper pools a task's templates and draws N prompted instances for
N examples (section 4.1). Deterministic in (seed, task, example index) so a restart sees the same prompts."""

from __future__ import annotations

import hashlib


def pick_template(seed: int, task: str, index: int, n_templates: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{task}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_templates
