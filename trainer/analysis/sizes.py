"""Size limits of the Hessian analyses, without torch: the API checks requests against them in a torch-free process."""
from __future__ import annotations

__all__ = ["MAX_HESSIAN_PARAMETERS", "MAX_HEATMAP_SIZE", "check_size"]

MAX_HESSIAN_PARAMETERS = 4096
"""Largest model whose dense Hessian is computed: n HVPs and an n×n eigendecomposition (4096² floats = 128 MiB
in float64)."""
MAX_HEATMAP_SIZE = 128


def check_size(num_parameters: int, limit: int = MAX_HESSIAN_PARAMETERS) -> None:
    """Raise ``ValueError`` naming the limit and the fix when a dense Hessian would be too large."""
    if num_parameters > limit:
        raise ValueError(
            f"Invalid model size for a dense Hessian: {num_parameters:,} parameters, the limit is {limit:,} "
            f"(it needs {num_parameters:,} Hessian-vector products and an n×n eigendecomposition). "
            f"Use the narrow MLP (model 'mlp-narrow', 784-4-10, 3,190 parameters) for this analysis.")
