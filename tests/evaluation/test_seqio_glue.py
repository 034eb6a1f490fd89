"""seqio.Evaluator runs a registered task's own metric_fns through our predict_fn/score_fn adapters."""

import numpy as np
import pytest

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

from optiml_jax.evaluation.seqio_glue import make_predict_fn, make_score_fn  # noqa: E402

EXAMPLES = [{"inputs": "Copy: abc\nAnswer:", "targets": " abc"}, {"inputs": "Copy: xy\nAnswer:", "targets": " xy"},
            {"inputs": "Say yes:", "targets": " yes"}]
SEEN = {}


def _exact(targets, predictions):
    SEEN["predictions"] = list(predictions)
    return {"exact": 100.0 * np.mean([t == p for t, p in zip(targets, predictions)])}


def _mean_score(targets, scores):
    SEEN["scores"] = list(scores)
    return {"mean_loglik": float(np.mean(scores))}


@pytest.fixture(scope="module")
def task_name(mini_vocab):
    name = "optiml_eval_test_copy"
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)

    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices({k: [e[k] for e in EXAMPLES] for k in ("inputs", "targets")})

    features = {k: seqio.Feature(mini_vocab, add_eos=(k == "targets")) for k in ("inputs", "targets")}
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(dataset_fn, splits=["validation"]),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=features, metric_fns=[_exact, _mean_score])
    yield name
    seqio.TaskRegistry.remove(name)


def test_seqio_evaluator_with_our_adapters(task_name, tiny_model, mini_vocab):
    evaluator = seqio.Evaluator(task_name, feature_converter=seqio.PrefixLMFeatureConverter(pack=False),
                                eval_split="validation", sequence_length={"inputs": 32, "targets": 8})
    metrics, _ = evaluator.evaluate(compute_metrics=True, step=1, predict_fn=make_predict_fn(tiny_model, max_new_tokens=4),
                                    score_fn=make_score_fn(tiny_model))
    result = metrics.result()[task_name]
    assert set(result) >= {"exact", "mean_loglik"}
    # The metric functions saw exactly what the model produces through the text-level API.
    expected_preds = [mini_vocab.decode(c) for c in tiny_model.generate_token_batches(
        [[2] + mini_vocab.encode(e["inputs"]) for e in EXAMPLES], max_new_tokens=4)]
    assert SEEN["predictions"] == expected_preds
    expected_scores = [row[0][0] for row in tiny_model.score_token_options(
        [[2] + mini_vocab.encode(e["inputs"]) for e in EXAMPLES],
        [[mini_vocab.encode(e["targets"]) + [2]] for e in EXAMPLES])]
    np.testing.assert_allclose(SEEN["scores"], expected_scores, rtol=1e-5)
    assert result["mean_loglik"] == pytest.approx(np.mean(expected_scores), rel=1e-5)


class _RaggedModel:
    """Stands in for DecoderOnlyModel where the adapters call it: continuations of different lengths (one empty), as a
    real model's are once some prompts stop at </s> early."""

    def __init__(self, config, continuations):
        from optiml_jax.vocabularies.special_ids import special_ids_of_config

        self.config, self.max_new_tokens, self.continuations = config, 8, continuations
        self.special_ids = special_ids_of_config(config)  # DecoderOnlyModel's without a vocabulary

    def generate_token_batches(self, prompts, max_new_tokens=None):
        assert len(prompts) == len(self.continuations)
        return [list(c) for c in self.continuations]

    def score_token_options(self, prompts, options):
        return [[(-float(len(opts[0])), False)] for opts in options]


def test_ragged_predictions_reach_the_metric_fns(task_name, tiny_config, mini_vocab):
    texts = [" the longest continuation here", "", " yes"]
    conts = [mini_vocab.encode(t) for t in texts]
    assert len({len(c) for c in conts}) == 3  # really ragged
    model = _RaggedModel(tiny_config, conts)
    evaluator = seqio.Evaluator(task_name, feature_converter=seqio.PrefixLMFeatureConverter(pack=False),
                                eval_split="validation", sequence_length={"inputs": 32, "targets": 8})
    metrics, _ = evaluator.evaluate(compute_metrics=True, step=1, predict_fn=make_predict_fn(model),
                                    score_fn=make_score_fn(model))
    assert set(metrics.result()[task_name]) >= {"exact", "mean_loglik"}
    assert SEEN["predictions"] == texts


def test_pad_ragged():
    from optiml_jax.evaluation.seqio_glue import pad_ragged

    rows = pad_ragged([[5, 6, 7], [], [9]], 1)
    assert np.array(rows).shape == (3, 3) and rows[1] == [1, 1, 1] and rows[2] == [9, 1, 1]
    with pytest.raises(ValueError, match="longer"):
        pad_ragged([[5, 6]], 1, width=1)
