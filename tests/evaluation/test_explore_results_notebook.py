"""notebooks/explore_results.ipynb runs top to bottom on outputs produced by our own evaluation code path."""

import json
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from optiml_jax.evaluation import EvalTask, run_evaluation  # noqa: E402
from optiml_jax.tasks.metadata import TaskInfo  # noqa: E402

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "explore_results.ipynb"


class _Scripted:
    """Scripted model: lets the test make real results.json files quickly (no JAX compile)."""

    def __init__(self, liked):
        import types

        self.liked = liked
        self.config = types.SimpleNamespace(max_position_embeddings=512)
        self.max_new_tokens = 4

    def _vocab(self):
        import types

        return types.SimpleNamespace(encode=lambda s: s.split())

    def score_options(self, sources, options):
        return [[{"logprob": 0.0 if o.strip() == self.liked else -1.0, "num_tokens": 1, "is_greedy": False}
                 for o in opts] for opts in options]

    def generate_texts(self, sources, max_new_tokens=None):
        return ["yes" for _ in sources]


def _tasks():
    out = []
    for i, (cat, lvl) in enumerate([("nli", "fully_held_out"), ("qa", "partially_supervised"),
                                    ("qa", "fully_supervised")]):
        info = TaskInfo(name=f"t{i}", collection="flan", category=cat, metric="accuracy")
        exs = [{"instruction": "", "input": f"x{j}", "target": "yes" if j % 2 else "no", "references": [],
                "options": ["yes", "no"], "id": f"{i}-{j}"} for j in range(4)]
        out.append(EvalTask(info=info, examples=exs, demonstrations=exs, level=lvl))
    return out


def test_notebook_runs_on_quickstart_like_outputs(tmp_path, monkeypatch):
    run_evaluation(_Scripted("no"), _tasks(), shots=(0, 2), output_dir=tmp_path / "before", step=0)
    run_evaluation(_Scripted("yes"), _tasks(), shots=(0, 2), output_dir=tmp_path / "after", step=30,
                   baseline=tmp_path / "before")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "loss": 5.0 / (s + 1)}) for s in range(30)))
    monkeypatch.setenv("OPTIML_RESULTS", f"before={tmp_path / 'before'},after={tmp_path / 'after'}")
    monkeypatch.setenv("OPTIML_TRAIN_JSONL", f"run={tmp_path / 'metrics' / 'train.jsonl'}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "training logs: {'run': 30}" in outputs
    # before: picks "no" (right on half), after: picks "yes" (right on the other half) -> both 50, Δ 0.
    assert "fully_held_out / 0-shot" in outputs and "Δ=  +0.0" in outputs
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4


def test_notebook_defaults_to_the_quickstarts_own_output_folders(tmp_path, monkeypatch):
    """No paths given: it reads MODEL_DIR/eval/step_0 (before), the latest MODEL_DIR/eval/step_<N> (after) and
    MODEL_DIR/metrics/train.jsonl, the folders the quickstart writes."""
    model_dir = tmp_path / "quickstart"
    run_evaluation(_Scripted("no"), _tasks(), shots=(0, 2), output_dir=model_dir / "eval" / "step_0", step=0)
    run_evaluation(_Scripted("no"), _tasks(), shots=(0, 2), output_dir=model_dir / "eval" / "step_10", step=10)
    run_evaluation(_Scripted("yes"), _tasks(), shots=(0, 2), output_dir=model_dir / "eval" / "step_30", step=30)
    (model_dir / "metrics").mkdir()
    (model_dir / "metrics" / "train.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "loss": 5.0 / (s + 1)}) for s in range(30)))
    monkeypatch.delenv("OPTIML_RESULTS", raising=False)
    monkeypatch.delenv("OPTIML_TRAIN_JSONL", raising=False)
    monkeypatch.setenv("OPTIML_MODEL_DIR", str(model_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "'before (step 0)': 0" in outputs and "'after (step 30)': 30" in outputs, outputs[:2000]
    assert "training logs: {'quickstart': 30}" in outputs


def test_committed_notebooks_carry_their_rendered_plots():
    """What GitHub shows: the notebooks are committed executed, with their figures."""
    for name, at_least in (("explore_results.ipynb", 4), ("register_tasks.ipynb", 0)):
        nb = nbformat.read(NOTEBOOK.parent / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.get("execution_count") for c in code[1:]), f"{name} is not committed executed"
        images = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) >= at_least, f"{name}: {len(images)} rendered figures"
