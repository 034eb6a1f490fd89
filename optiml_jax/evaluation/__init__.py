"""Zero- and few-shot evaluation (paper section 4.1 / 5): rank classification and greedy generation on any of our decoders,
the paper's aggregation (task -> category -> generalization level / collection), reports, and adapters for
SeqIO's Evaluator and lm-evaluation-harness.

    from optiml_jax.evaluation import DecoderOnlyModel, mini_bench_tasks, run_evaluation
    model = DecoderOnlyModel.from_checkpoint(path, OPTVocabulary(tokenizer_dir))
    results = run_evaluation(model, mini_bench_tasks(), shots=(0, 5), output_dir="eval_out", step=1000)

    # a SeqIO task's own metric_fns through seqio.Evaluator (outputs in eval_out/inference_eval/)
    from optiml_jax.evaluation.seqio_eval import evaluate_mixture_or_task
    metrics = evaluate_mixture_or_task(model, "my_task", output_dir="eval_out", step=1000)
"""

from optiml_jax.evaluation.eval_tasks import EvalTask, mini_bench_tasks, pick_demonstrations, tasks_from_raw
from optiml_jax.evaluation.evaluator import evaluate_task, evaluate_tasks, run_evaluation
from optiml_jax.evaluation.hooks import CompositeCallback, EvalCallback, SeqioEvalCallback, evaluate_params
from optiml_jax.evaluation.model import DecoderOnlyModel
from optiml_jax.evaluation.outputs import load_results
from optiml_jax.lazy_imports import renamed_attributes

# Renamed names: one release of a clear error pointing to the new one (the class serves every family, not OPT).
RENAMED = {"OPTModel": "DecoderOnlyModel"}
__getattr__ = renamed_attributes(__name__, RENAMED, " (it evaluates every model family)")


__all__ = [
    "CompositeCallback",
    "EvalCallback",
    "EvalTask",
    "DecoderOnlyModel",
    "SeqioEvalCallback",
    "evaluate_params",
    "evaluate_task",
    "evaluate_tasks",
    "load_results",
    "mini_bench_tasks",
    "pick_demonstrations",
    "run_evaluation",
    "tasks_from_raw",
]
