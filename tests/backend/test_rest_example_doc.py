"""docs/rest-example.md against the API: every POST of its curl block is sent, its status is the one the doc
shows after it, and the bad-input answer printed in the doc is exactly what the API returns."""
from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "rest-example.md"
# a POST of the curl block, its JSON body, and the "# → <status>" line that follows it
_POST = re.compile(r"curl -s -X POST \$API(?P<path>/api/\S+) -H 'content-type: application/json' -d '(?P<body>\{.*?\})'"
                   r"\n# → (?P<status>\d{3})", re.S)


def _curl_block() -> str:
    text = DOC.read_text()
    return text[text.index("```bash"):text.index("```", text.index("```bash") + 7)]


def test_every_post_in_the_doc_gets_the_status_it_shows(client):
    posts = list(_POST.finditer(_curl_block()))
    assert len(posts) >= 3  # one run, the bad input, a comparison
    for m in posts:
        r = client.post(m["path"], json=json.loads(m["body"]))
        assert r.status_code == int(m["status"]), (m["path"], m["body"], r.text)


def test_the_bad_input_answer_is_word_for_word_the_apis(client):
    bad = next(m for m in _POST.finditer(_curl_block()) if m["status"] == "422")
    text = DOC.read_text()
    section = text[text.index("## The bad-input answer"):]
    shown = json.loads(section[section.index("```json") + 7:section.index("```", section.index("```json") + 7)])
    r = client.post(bad["path"], json=json.loads(bad["body"]))
    assert r.status_code == 422 and r.json() == shown
    assert client.get("/api/runs").json()["total"] == 0  # refused: nothing stored
