"""Image helpers for the reconstruction grid (pure: PNG bytes in, PNG bytes out)."""
from __future__ import annotations

import io

from PIL import Image

__all__ = ["upscale_png"]


def upscale_png(png: bytes, factor: int = 2) -> bytes:
    """``png`` enlarged ``factor``× with nearest-neighbour sampling, so pixels stay crisp in the browser."""
    if factor < 1:
        raise ValueError(f"Invalid upscale factor: {factor}; use 1 or more")
    if factor == 1:
        return png
    with Image.open(io.BytesIO(png)) as img:
        big = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
        out = io.BytesIO()
        big.save(out, format="PNG")
    return out.getvalue()
