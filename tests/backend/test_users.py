"""Named users (issue 18, item 3): the users file, its CLI, hashed tokens and the API's sign-in with them."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.users import Directory, UsersFile, hash_token, main
from tests.backend.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


def _token_of(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_cli_add_list_rotate_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "u" / "users.json"
    assert main(["--file", str(path), "add", "alice"]) == 0
    alice = _token_of(capsys.readouterr().out)
    assert main(["--file", str(path), "add", "root", "--admin"]) == 0
    root = _token_of(capsys.readouterr().out)
    assert len(alice) >= 43 and alice != root  # 256 random bits, URL-safe
    text = path.read_text()
    assert alice not in text and root not in text  # only hashes at rest
    entries = json.loads(text)["users"]
    assert entries == [{"name": "alice", "role": "member", "token_sha256": hash_token(alice)},
                       {"name": "root", "role": "admin", "token_sha256": hash_token(root)}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["--file", str(path), "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["alice\tmember", "root\tadmin"]
    assert main(["--file", str(path), "add", "alice"]) == 1  # exists: says what to do
    assert "rotate alice" in capsys.readouterr().err
    assert main(["--file", str(path), "rotate", "alice"]) == 0
    new = _token_of(capsys.readouterr().out)
    users = Directory(path, None)
    assert users.authenticate(alice) is None and users.authenticate(new).name == "alice"
    assert main(["--file", str(path), "remove", "alice"]) == 0
    assert Directory(path, None).authenticate(new) is None
    assert main(["--file", str(path), "remove", "alice"]) == 1
    assert main(["--file", str(path), "add", "../etc"]) == 1  # invalid name
    assert "Invalid user name" in capsys.readouterr().err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_cli_as_a_module_uses_the_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TRUSTLAB_USERS_FILE": str(tmp_path / "users.json")}
    out = subprocess.run([sys.executable, "-m", "backend.users", "add", "bob"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Directory(tmp_path / "users.json", None).authenticate(_token_of(out.stdout)).name == "bob"
    env.pop("TRUSTLAB_USERS_FILE")
    out = subprocess.run([sys.executable, "-m", "backend.users", "list"], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "TRUSTLAB_USERS_FILE" in out.stderr


def test_directory_api_token_and_changes_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    users = Directory(path, "single-secret")
    assert users.required
    admin = users.authenticate("single-secret")
    assert admin is not None and admin.name == "admin" and admin.is_admin
    assert users.authenticate("") is None and users.authenticate("single-secre") is None
    token = UsersFile(path).add("carol", "member")
    assert users.authenticate(token).role == "member"  # the file is re-read when it changes
    path.write_text("{not json")
    assert users.authenticate(token) is None and "not JSON" in (users.problem or "")
    assert users.authenticate("single-secret") is not None  # a broken file never locks the admin token out
    assert not Directory(None, None).required


@pytest.mark.parametrize("content", ['{"users": [{"name": "a", "role": "root", "token_sha256": "' + "0" * 64 + '"}]}',
                                     '{"users": [{"name": "a b", "role": "member", "token_sha256": "' + "0" * 64 + '"}]}',
                                     '{"users": [{"name": "a", "role": "member", "token_sha256": "plain"}]}',
                                     '[1, 2]'])
def test_bad_users_file_is_refused_with_the_reason(tmp_path: Path, content: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="Invalid users file"):
        UsersFile(path).read()


def test_api_signs_in_named_users(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    alice = UsersFile(path).add("alice", "member")
    with TestClient(create_app(make_settings(tmp_path, users_file=path, api_token="single"))) as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": f"Bearer {alice}"}).status_code == 200
        # /api/auth answers without a token (the UI asks it whether to show a sign-in page) ...
        assert c.get("/api/auth").json() == {"required": True, "user": None}
        assert c.get("/api/auth", headers={"Authorization": f"Bearer {alice}"}).json() == {
            "required": True, "user": {"name": "alice", "role": "member"}}
        assert c.get("/api/auth", headers={"Authorization": "Bearer single"}).json()["user"] == {
            "name": "admin", "role": "admin"}
        # ... but a token that is sent must be right
        r = c.get("/api/auth", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "wrong token" in r.json()["detail"]


def test_open_loopback_api_acts_as_the_local_user(client: TestClient) -> None:
    assert client.get("/api/auth").json() == {"required": False, "user": {"name": "local", "role": "admin"}}


def test_users_file_alone_allows_a_non_loopback_bind(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, host="0.0.0.0", users_file=tmp_path / "users.json"))) as c:
        assert c.get("/api/runs").status_code == 401  # nobody yet: every token is refused
