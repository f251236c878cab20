"""Start the API: ``python -m backend.serve`` binds uvicorn to TRUSTLAB_HOST:TRUSTLAB_PORT (refuses an unsafe bind).

``make run`` / ``make api`` use this, so the API knows the address it listens on: anything but loopback
requires TRUSTLAB_API_TOKEN, and that address is an allowed Host header name.
"""
from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    from backend.settings import get_settings

    settings = get_settings()
    try:
        settings.check_bind()
    except ValueError as exc:
        print(f"trustlab API not started: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run("backend.main:app", host=settings.host, port=settings.port, proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
