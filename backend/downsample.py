"""Min/max-preserving downsampling: re-exported from ``trainer.downsample`` (a numpy-only module the UI shares)."""
from trainer.downsample import minmax_indices

__all__ = ["minmax_indices"]
