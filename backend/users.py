"""Named users: the users file (TRUSTLAB_USERS_FILE), token checks, and the CLI ``python -m backend.users``.

The file is JSON, ``{"users": [{"name": "alice", "role": "member", "token_sha256": "<hex>"}, ...]}``, written
atomically (a temporary file in the same folder, fsync, rename) with owner-only permissions (0600).

Tokens are 256-bit random strings (``secrets.token_urlsafe(32)``) and only their SHA-256 is stored. A slow
password hash (scrypt, PBKDF2) exists to stretch low-entropy secrets that people choose; these tokens are
machine-made with 256 bits of entropy, so a stored hash cannot be inverted by guessing, and a fast hash keeps
every request's check at microseconds instead of the tens of milliseconds scrypt would add to each API call.
A presented token is hashed and compared with every user's hash by ``hmac.compare_digest`` (constant time, no
early exit), so timing says nothing about which hash matched or how closely.

``TRUSTLAB_API_TOKEN`` keeps working beside the file: it signs in as one admin (``api_token_user``, "admin").
With neither configured (an open loopback API) every request acts as ``local_user``, an admin.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

__all__ = ["User", "Role", "ROLES", "NAME_PATTERN", "UsersFile", "Directory", "hash_token", "new_token",
           "validate_name", "main"]

Role = Literal["admin", "member"]
ROLES: tuple[str, ...] = ("admin", "member")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"
_NAME = re.compile(NAME_PATTERN)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_USERS = 10_000


@dataclass(frozen=True)
class User:
    """Who a request acts as."""

    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def view(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role}


def validate_name(name: str) -> str:
    """``name`` if it is a valid user name (1-40 letters, digits, _ . -, starting with a letter or digit)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"Invalid user name {str(name)[:60]!r}: use 1-40 letters, digits, _ . - (starting with a "
                         "letter or digit)")
    return name


def new_token() -> str:
    """A fresh 256-bit random token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, hex (see the module docstring for why not a slow hash)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class UsersFile:
    """The users file at ``path``: read, and changed under an exclusive lock with an atomic rewrite."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, str]]:
        """The entries (name, role, token_sha256); a missing file has none. Raises ValueError on a bad file."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"Invalid users file {self.path}: not JSON ({exc}); fix or recreate it with "
                             "`python -m backend.users add NAME`") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, list) or len(users) > MAX_USERS:
            raise ValueError(f"Invalid users file {self.path}: expected {{\"users\": [...]}} with at most "
                             f"{MAX_USERS} entries")
        seen: set[str] = set()
        out = []
        for entry in users:
            if not isinstance(entry, dict):
                raise ValueError(f"Invalid users file {self.path}: every user is an object")
            name, role, digest = entry.get("name"), entry.get("role"), entry.get("token_sha256")
            try:
                validate_name(name)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"Invalid users file {self.path}: {exc}") from None
            if role not in ROLES or not isinstance(digest, str) or not _HEX64.match(digest) or name in seen:
                raise ValueError(f"Invalid users file {self.path}: user {name!r} needs a role in {list(ROLES)}, "
                                 "a 64-digit hex token_sha256 and a unique name")
            seen.add(str(name))
            out.append({"name": str(name), "role": role, "token_sha256": digest})
        return out

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, users: list[dict[str, str]]) -> None:
        """Replace the file atomically, owner-only (0600)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"users": users}, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with contextlib.suppress(OSError):  # make the rename durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def add(self, name: str, role: Role) -> str:
        """Add a user; returns its fresh token (shown once, stored only as its hash)."""
        validate_name(name)
        with self._locked():
            users = self.read()
            if any(u["name"] == name for u in users):
                raise ValueError(f"user {name!r} exists already; `rotate {name}` gives it a new token, "
                                 f"`remove {name}` deletes it")
            token = new_token()
            users.append({"name": name, "role": role, "token_sha256": hash_token(token)})
            self._write(users)
        return token

    def remove(self, name: str) -> None:
        with self._locked():
            users = self.read()
            if not any(u["name"] == name for u in users):
                raise ValueError(f"no user {name!r}; `list` shows the users")
            self._write([u for u in users if u["name"] != name])

    def rotate(self, name: str) -> str:
        """A new token for ``name`` (the old one stops working at once); returns it."""
        with self._locked():
            users = self.read()
            for u in users:
                if u["name"] == name:
                    token = new_token()
                    u["token_sha256"] = hash_token(token)
                    self._write(users)
                    return token
        raise ValueError(f"no user {name!r}; `list` shows the users, `add {name}` creates it")


class Directory:
    """Who a token belongs to: the users file (re-read when it changes) and the single API token.

    Args:
        users_file: the file, or None (only ``api_token``).
        api_token: TRUSTLAB_API_TOKEN, an admin named ``api_token_user``.
        local_user: who requests act as when nothing is configured (an admin).
    """

    def __init__(self, users_file: Path | None, api_token: str | None, *, api_token_user: str = "admin",
                 local_user: str = "local") -> None:
        self.file = UsersFile(users_file) if users_file is not None else None
        self.required = users_file is not None or api_token is not None
        self.local = User(local_user, "admin")
        self._api = (hash_token(api_token), User(api_token_user, "admin")) if api_token else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[tuple[str, User]] = []
        self._problem: str | None = None

    def _entries_now(self) -> list[tuple[str, User]]:
        """The file's (hash, user) pairs, re-read when its size, mtime or inode changed (add/remove/rotate
        take effect on the next request, no restart). A broken file admits nobody from it (logged by caller)."""
        if self.file is None:
            return []
        try:
            st = self.file.path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._entries = [(u["token_sha256"], User(u["name"], u["role"]))  # type: ignore[arg-type]
                                     for u in self.file.read()]
                    self._problem = None
                except (ValueError, OSError) as exc:
                    self._entries, self._problem = [], str(exc)
                self._stamp = stamp
            return self._entries

    @property
    def problem(self) -> str | None:
        """Why the users file could not be read at the last check (None when it was fine)."""
        return self._problem

    def authenticate(self, token: str) -> User | None:
        """The user whose token this is, or None. Every stored hash is compared (constant time each)."""
        if not token:
            return None
        digest = hash_token(token).encode()
        found: User | None = None
        candidates = list(self._entries_now())
        if self._api is not None:
            candidates.append(self._api)
        for stored, user in candidates:
            if hmac.compare_digest(digest, stored.encode()) and found is None:
                found = user
        return found


# ------------------------------------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend.users",
                                description="Manage trustlab's named users (the file TRUSTLAB_USERS_FILE).")
    p.add_argument("--file", type=Path, default=None, help="users file (default: TRUSTLAB_USERS_FILE)")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user and print its token (once)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may change everyone's runs and read the audit trail")
    sub.add_parser("list", help="names and roles (never tokens)")
    rm = sub.add_parser("remove", help="delete a user (its token stops working at once)")
    rm.add_argument("name")
    rot = sub.add_parser("rotate", help="give a user a new token (printed once; the old one stops working)")
    rot.add_argument("name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.file
    if path is None:
        from backend.settings import Settings

        path = Settings().users_file
    if path is None:
        print("no users file: set TRUSTLAB_USERS_FILE (e.g. var/users.json) or pass --file", file=sys.stderr)
        return 2
    users = UsersFile(path)
    try:
        if args.command == "add":
            role: Role = "admin" if args.admin else "member"
            token = users.add(args.name, role)
            print(f"added {args.name} ({role}); token (shown once, store it now):\n{token}")
        elif args.command == "rotate":
            token = users.rotate(args.name)
            print(f"new token for {args.name} (shown once; the old one no longer works):\n{token}")
        elif args.command == "remove":
            users.remove(args.name)
            print(f"removed {args.name}")
        else:
            rows: list[dict[str, Any]] = users.read()
            for u in rows:
                print(f"{u['name']}\t{u['role']}")
            if not rows:
                print(f"no users in {path}", file=sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
