"""Test utilities for users writing their own tasks and tests (in the spirit of `seqio.test_utils`), used by the
project's own tests:

    from optiml_jax.testing import assert_batch_contract, register_fake_instruction_task, scratch_task
    with scratch_task(register_fake_instruction_task("my_fake", n=16)) as name:
        batch = get_train_stream(name, 128, batch_size=2).get_batch(0)
        assert_batch_contract(batch, batch_size=2, length=128)

`optiml_jax.testing.source_files` writes small source files, each in its collection's public format (NIv2 JSON, CoT TSV,
JSONL, PromptSource YAML, FLAN patterns); `write_seqio_cache` writes what seqio's cache_tasks_main writes, without Beam. Importing this package imports SeqIO (the task registry).
"""

from optiml_jax.testing.batch_contract import assert_batch_contract, segments
from optiml_jax.testing.instruction_tasks import fake_instruction_examples, register_fake_instruction_task, scratch_task
from optiml_jax.testing.seqio_cache import write_seqio_cache
from optiml_jax.testing.seqio_modules import write_seqio_task_module

__all__ = ["assert_batch_contract", "fake_instruction_examples", "register_fake_instruction_task", "scratch_task",
           "segments", "write_seqio_cache", "write_seqio_task_module"]
