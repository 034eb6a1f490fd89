"""Attention kernels. Importable without TensorFlow, SeqIO or gin.

`dot_product_attention` is what the model calls; backends: 'reference' (pure JAX, always), 'xla' (CPU-tuned
blocked attention with a recomputing VJP, `optiml_jax.kernels.xla_attention`; what 'auto' picks on CPU),
'pallas' (segment-aware flash attention, `optiml_jax.kernels.pallas_attention`), 'splash' and 'cudnn'
(JAX's own kernels, `optiml_jax.kernels.peer_backends`), others by registration. The Pallas-backed ones
register lazily: importing this package stays cheap and never imports Pallas.
"""

from typing import TYPE_CHECKING

from optiml_jax.kernels.backends import (
    available_backends,
    dot_product_attention,
    get_backend,
    register_backend,
    register_lazy_backend,
    resolve_backend,
)
from optiml_jax.kernels.reference import attention_mask, reference_attention
from optiml_jax.lazy_imports import lazy_attributes

# Public names of the heavy modules, imported on first use (importing this package never imports Pallas):
#   from optiml_jax.kernels import flash_attention   # the function; its module is `pallas_attention`
_LAZY = {
    "flash_attention": "optiml_jax.kernels.pallas_attention",
    "sharded_flash_attention": "optiml_jax.kernels.pallas_attention",
    "make_sharded_backend": "optiml_jax.kernels.pallas_attention",
    "lower_for_platform": "optiml_jax.kernels.pallas_attention",
    "block_visits": "optiml_jax.kernels.pallas_attention",
    "xla_attention": "optiml_jax.kernels.xla_attention",
    "cached_attention": "optiml_jax.kernels.decode_attention",
}


__getattr__ = lazy_attributes(__name__, globals(), _LAZY)
if TYPE_CHECKING:  # the deferred imports, visible to the layer contract (optiml_jax/lazy_imports.py)
    from optiml_jax.kernels import decode_attention, pallas_attention, peer_backends, xla_attention

register_lazy_backend("pallas", "optiml_jax.kernels.pallas_attention")
register_lazy_backend("xla", "optiml_jax.kernels.xla_attention")
register_lazy_backend("splash", "optiml_jax.kernels.peer_backends")
register_lazy_backend("cudnn", "optiml_jax.kernels.peer_backends")

__all__ = [
    "attention_mask",
    "block_visits",
    "cached_attention",
    "flash_attention",
    "lower_for_platform",
    "make_sharded_backend",
    "sharded_flash_attention",
    "xla_attention",
    "available_backends",
    "dot_product_attention",
    "get_backend",
    "reference_attention",
    "register_backend",
    "register_lazy_backend",
    "resolve_backend",
]
