"""Instruction formatting: delimiters, demonstration placement, length-aware k-shot prompts, broken examples."""

import pytest

from optiml_jax.tasks.formatting import (DELIMITERS, BrokenExampleError, check_example, draw_delimiter,
                                        format_few_shot, layout, source_text)
from optiml_jax.tasks.metadata import TaskInfo

NIV2 = TaskInfo("t_niv2", "niv2", "arithmetic", instruction_type="task")
FLAN = TaskInfo("t_flan", "flan", "arithmetic", instruction_type="instance")
PRETRAIN = TaskInfo("t_pt", "pretraining", "lm", full_sequence_loss=True)


def ex(i, instruction="Add the numbers.", text=None, target=None):
    return {"instruction": instruction, "input": text or f"Input: {i} + 1", "target": target or str(i + 1),
            "references": [], "options": [], "id": f"e{i}"}


def test_paper_delimiter_set():
    assert DELIMITERS == ("\nAnswer:", " Answer:", "\nA:", " A:", "\nOutput:", " Output:", "\nanswer:", "\noutput:")


def test_delimiter_is_seeded_per_example_and_varies():
    drawn = [draw_delimiter("t_niv2", f"e{i}") for i in range(300)]
    assert drawn == [draw_delimiter("t_niv2", f"e{i}") for i in range(300)]
    assert set(drawn) == set(DELIMITERS)  # every delimiter occurs over 300 examples
    assert drawn != [draw_delimiter("t_niv2", f"e{i}", seed=1) for i in range(300)]


def test_delimiter_only_when_source_does_not_end_with_colon():
    pieces = layout(FLAN, ex(1, instruction="", text="Question: 2 + 2"), delimiter="\nA:")
    assert source_text(pieces) == "Question: 2 + 2\nA:"
    pieces = layout(FLAN, ex(1, instruction="", text="table: x ; answer:"), delimiter="\nA:")
    assert source_text(pieces) == "table: x ; answer:"
    assert pieces[-1].text == " 2" and pieces[-1].is_label


def test_task_level_demonstrations_sit_between_definition_and_input():
    demos = [ex(10), ex(20)]
    src = source_text(layout(NIV2, ex(1), demos, delimiter=" Output:", separator="\n\n\n"))
    assert src == ("Add the numbers.\n\n\nInput: 10 + 1 Output: 11\n\n\nInput: 20 + 1 Output: 21"
                   "\n\n\nInput: 1 + 1 Output:")
    assert src.count("Add the numbers.") == 1


def test_instance_level_demonstrations_come_before_the_example():
    e = ex(1, instruction="", text="What is 1 + 1?")
    demos = [ex(5, instruction="", text="What is 5 + 1?")]
    src = source_text(layout(FLAN, e, demos, delimiter="\nAnswer:", separator="\n\n\n"))
    assert src == "What is 5 + 1?\nAnswer: 6\n\n\nWhat is 1 + 1?\nAnswer:"


def test_zero_shot_task_level_joins_definition_and_input():
    assert source_text(layout(NIV2, ex(3), delimiter="\nA:")) == "Add the numbers.\n\nInput: 3 + 1\nA:"


def test_loss_variants():
    demos = [ex(10), ex(20)]
    def labels(loss):
        return [p.text for p in layout(NIV2, ex(1), demos, delimiter=" A:", loss=loss) if p.is_label]
    assert labels("target") == [" 2"]
    assert labels("all_targets") == [" 11", " 21", " 2"]
    # suffix: first demonstration's label, then everything after it
    assert labels("suffix") == [" 11", "\n\n\nInput: 20 + 1 A:", " 21", "\n\n\nInput: 1 + 1 A:", " 2"]
    with pytest.raises(ValueError, match="loss variant"):
        layout(NIV2, ex(1), demos, delimiter=" A:", loss="everything")


def test_full_sequence_loss_tasks_have_no_source():
    pieces = layout(PRETRAIN, {"instruction": "", "input": "", "target": "Some text.", "id": "p"}, delimiter=" A:")
    assert [(p.text, p.is_label) for p in pieces] == [("Some text.", True)]


def test_few_shot_drops_demonstrations_that_do_not_fit():
    words = lambda s: len(s.split())  # noqa: E731
    demos = [ex(i) for i in range(10, 15)]
    src0, tgt = format_few_shot(NIV2, ex(1), demos, k=0, delimiter=" A:")
    assert tgt == "2" and "10 + 1" not in src0
    full, _ = format_few_shot(NIV2, ex(1), demos, k=5, delimiter=" A:")
    assert all(f"{i} + 1" in full for i in range(10, 15))
    budget = words(full) - 1  # one word short: the last demonstration must go
    cut, _ = format_few_shot(NIV2, ex(1), demos, k=5, max_source_tokens=budget, count_tokens=words, delimiter=" A:")
    assert "14 + 1" not in cut and "13 + 1" in cut and words(cut) <= budget
    assert cut.endswith("Input: 1 + 1 A:")


def test_few_shot_left_truncates_an_overlong_zero_shot_source():
    long = ex(1, text="word " * 50 + "end")
    src, _ = format_few_shot(NIV2, long, [], max_source_tokens=5, count_tokens=lambda s: len(s.split()),
                             truncate_left=lambda s, n: " ".join(s.split()[-n:]), delimiter=" A:")
    assert src == "word word word end A:"


@pytest.mark.parametrize("bad,needle", [
    ({"instruction": "", "input": "x", "target": "", "id": "b1"}, "empty target"),
    ({"instruction": "", "input": "x", "target": "   ", "id": "b2"}, "empty target"),
    ({"instruction": "", "input": "x", "id": "b3"}, "missing"),
    ({"instruction": "", "input": " ", "target": "y", "id": "b4"}, "empty instruction and input"),
])
def test_broken_examples_name_task_and_example(bad, needle):
    with pytest.raises(BrokenExampleError, match=needle) as err:
        check_example(FLAN, bad)
    assert "t_flan" in str(err.value) and bad["id"] in str(err.value)


def test_draw_demonstrations_is_one_draw_for_counts_and_sequences():
    """Training draws from a sequence of positions, the evaluations from a count: the same rng gives the same
    picks, distinct, never more than there are, and nothing for k = 0 or an empty pool."""
    import numpy as np

    from optiml_jax.tasks.formatting import draw_demonstrations

    by_count = draw_demonstrations(np.random.default_rng(7), 10, 4)
    by_sequence = draw_demonstrations(np.random.default_rng(7), np.arange(10), 4)
    assert [int(i) for i in by_count] == [int(i) for i in by_sequence] and len(set(map(int, by_count))) == 4
    assert sorted(int(i) for i in draw_demonstrations(np.random.default_rng(0), [5, 6], 9)) == [5, 6]
    assert draw_demonstrations(np.random.default_rng(0), 3, 0) == [] == draw_demonstrations(np.random.default_rng(0), [], 2)
