"""The ``trustlab`` console script (pyproject.toml): one command in front of the project's entry points.

``trustlab train …`` is the trainer's CLI (``python -m trainer``), ``trustlab serve`` starts the API
(``python -m backend.serve``), ``trustlab users …`` manages named users (``python -m backend.users``, where that
module exists). It lives in the backend because the trainer imports nothing of the backend; each subcommand's
module is imported only when it is chosen, so ``trustlab train`` never loads the API.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "main"]

# subcommand → (module whose main(argv) or main() runs it, whether it takes the remaining arguments, help)
COMMANDS: dict[str, tuple[str, bool, str]] = {
    "train": ("trainer.cli", True, "train one run without the server (python -m trainer)"),
    "serve": ("backend.serve", False, "start the API on TRUSTLAB_HOST:TRUSTLAB_PORT (python -m backend.serve)"),
    "users": ("backend.users", True, "manage named users and their tokens (python -m backend.users)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    return "usage: trustlab {" + ",".join(COMMANDS) + "} [arguments]\n\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"trustlab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, takes_args, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # a missing dependency of the module: not ours to hide
            raise
        print(f"trustlab {name}: this installation has no {module_name} module", file=sys.stderr)
        return 2
    entry: Callable[..., int | None] = module.main
    if takes_args:
        return int(entry(rest) or 0)
    if rest:
        print(f"trustlab {name} takes no arguments (it reads TRUSTLAB_* variables), got {rest}", file=sys.stderr)
        return 2
    return int(entry() or 0)


if __name__ == "__main__":
    sys.exit(main())
