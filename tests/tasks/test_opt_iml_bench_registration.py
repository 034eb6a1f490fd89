"""Registering real NIv2/CoT tasks through the data helper's registry, from gin macros."""

import gin
import pytest

from optiml_jax.tasks import registry


def test_register_from_gin_macros(shared_data):
    import optiml_jax.tasks.opt_iml_bench as opt_iml_bench
    from optiml_jax.tasks.catalog.entries import CATALOG_DIR
    gin.clear_config()
    gin.parse_config_files_and_bindings([str(CATALOG_DIR / "sources.gin")], [
        f"NIV2_DATA_DIR = '{shared_data / 'niv2' / 'tasks'}'", f"COT_DATA_DIR = '{shared_data / 'flan' / 'cot_data'}'",
        f"OPT_TOKENIZER_DIR = '{shared_data / 'opt_tokenizer'}'"])
    try:
        names = opt_iml_bench.register_opt_iml_bench(replace=True)
    finally:
        gin.clear_config()
    assert "niv2_task062_bigbench_repeat_copy_logic" in names and "cot_gsm8k" in names and len(names) == 12
    # Word Analogy is a fully held-out category: test split only (first 100 instances), nothing to train on
    bard = registry.get_task("niv2_task1152_bard_analogical_reasoning_causation")
    assert set(bard.splits) == {"test"}
    assert len(registry.load_raw_examples(bard.info.name, "test")) == 100
    assert set(registry.get_task("cot_gsm8k").splits) == {"test"}  # GSM8K: partially supervised validation task
    assert set(registry.get_task("cot_creak").splits) == {"train"}
    ex = registry.load_raw_examples("cot_creak", "train")[0]
    assert ex["target"].endswith(".") and "So the answer is" in ex["target"]
