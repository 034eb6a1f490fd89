"""Fixtures for conversion tests: the Hugging Face PyTorch peers live in tests/hf_peers.py (shared with model tests)."""

from hf_peers import hf_pair  # noqa: F401  (pytest fixture)
