"""MetaICL-style training with demonstrations (paper section 4.8), configured from gin.

Per training example: with probability `share` it is a MetaICL example, whose number of shots k is drawn
from a Zipf law truncated to {0, ..., max_shots}: P(k) proportional to (k + 1)^(-a). With a=4 this gives
92.5% 0-shot and with a=2 67.1% 0-shot, the paper's figures for K=5. The k demonstrations are other train
examples of the same task, drawn uniformly; demonstrations that do not fit the sequence length are dropped
(last first). `loss` picks the label pieces (see `formatting.layout`): "target" = the paper's standard loss,
"suffix" = the paper's suffix loss (first demonstration's label + full sequences of all later examples),
"all_targets" = every demonstration's target plus the example's target (the brief's reading, kept as a variant).
`share=0` (the default) turns MetaICL off: the paper's final models use no demonstrations in training.
"""

from __future__ import annotations

import dataclasses

import gin
import numpy as np

from optiml_jax.tasks.formatting import DEFAULT_SEPARATOR, LOSS_VARIANTS, fit_demonstrations


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MetaICLConfig:
    share: float = 0.0
    zipf_a: float = 2.0
    max_shots: int = 5
    separator: str = DEFAULT_SEPARATOR
    loss: str = "target"

    def __post_init__(self):
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"MetaICLConfig.share must be in [0, 1], got {self.share}")
        if self.max_shots < 0 or self.zipf_a <= 0:
            raise ValueError(f"MetaICLConfig: need max_shots >= 0 and zipf_a > 0, got {self.max_shots}, {self.zipf_a}")
        if self.loss not in LOSS_VARIANTS:
            raise ValueError(f"MetaICLConfig.loss={self.loss!r}; expected one of {LOSS_VARIANTS}")

    @property
    def enabled(self) -> bool:
        return self.share > 0 and self.max_shots > 0


def zipf_shot_probabilities(a: float, max_shots: int) -> np.ndarray:
    """P(k) for k = 0..max_shots, proportional to (k + 1)^(-a)."""
    w = np.arange(1, max_shots + 2, dtype=np.float64) ** (-a)
    return w / w.sum()


def draw_num_shots(rng: np.random.Generator, config: MetaICLConfig, size: int) -> np.ndarray:
    """Shots per example: 0 for the (1 - share) non-MetaICL part, Zipf-distributed for the rest."""
    if not config.enabled:
        return np.zeros(size, np.int64)
    shots = rng.choice(config.max_shots + 1, size=size, p=zipf_shot_probabilities(config.zipf_a, config.max_shots))
    return np.where(rng.random(size) < config.share, shots, 0)


def token_space_demonstrations(tokens, j: int, demo_rows, vocabulary, config: MetaICLConfig, max_len: int, *,
                               full_sequence_loss: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A k-shot example built from token ids alone, for tasks whose dataset has no raw text (e.g. a user's
    seqio task that tokenizes in its own preprocessors): instance-level placement, each demonstration being its
    `inputs ++ targets` without the final `</s>`, joined by the tokens of `config.separator`, then the example.

    Loss variants as `formatting.layout`: "target" = the example's targets only, "all_targets" = every
    demonstration's targets too, "suffix" = everything from the first demonstration's targets on. Demonstrations
    are dropped from the end until the result fits `max_len`.
    """
    sep = np.asarray(vocabulary.encode(config.separator), np.int32)
    eos = vocabulary.eos_id

    def build(demos):
        ids, weights, labelled = [], [], False
        for d in demos:
            inp, tgt = tokens.inputs_and_targets(int(d))
            if len(tgt) and tgt[-1] == eos:
                tgt = tgt[:-1]
            demo_target = config.loss in ("all_targets", "suffix")
            ids += [inp, tgt, sep]
            weights += [np.full(len(inp), 1.0 if (config.loss == "suffix" and labelled) or full_sequence_loss else 0.0),
                        np.full(len(tgt), 1.0 if demo_target or full_sequence_loss else 0.0),
                        np.full(len(sep), 1.0 if config.loss == "suffix" else 0.0)]
            labelled = labelled or demo_target
        inp, tgt = tokens.inputs_and_targets(j)
        ids += [inp, tgt]
        weights += [np.full(len(inp), 1.0 if (config.loss == "suffix" and labelled) or full_sequence_loss else 0.0),
                    np.ones(len(tgt))]
        return np.concatenate(ids).astype(np.int32), np.concatenate(weights).astype(np.float32)

    return fit_demonstrations(build, demo_rows, lambda built: len(built[0]) <= max_len)
