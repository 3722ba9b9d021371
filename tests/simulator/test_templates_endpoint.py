"""GET /{version}/{waba_id}/message_templates: the configured list, paged like Graph."""

from __future__ import annotations

import json

import pytest

from messaging.simulator.harness import SimulatorError, start_simulator
from messaging.simulator.templates import DEMO_TEMPLATES


def _all_pages(http, sim, url: str) -> list[list[dict]]:
    pages = []
    while url and len(pages) < 50:
        body = http.get(url, headers=sim.auth_headers).json()
        pages.append(body["data"])
        url = body.get("paging", {}).get("next")
    return pages


def test_following_next_links_returns_every_template_once(fresh_simulator, http):
    sim = fresh_simulator
    pages = _all_pages(http, sim, sim.templates_url() + "?limit=3")
    assert [len(page) for page in pages] == [3, 1]
    assert [t["id"] for page in pages for t in page] == [t["id"] for t in DEMO_TEMPLATES]


def test_after_cursor_continues_where_the_page_ended(fresh_simulator, http):
    sim = fresh_simulator
    first = http.get(sim.templates_url(), params={"limit": 2}, headers=sim.auth_headers).json()
    after = first["paging"]["cursors"]["after"]
    second = http.get(
        sim.templates_url(), params={"limit": 2, "after": after}, headers=sim.auth_headers
    ).json()
    assert [t["id"] for t in second["data"]] == [t["id"] for t in DEMO_TEMPLATES[2:4]]
    assert "next" not in second["paging"]


def test_status_filter_and_bad_cursor(fresh_simulator, http):
    sim = fresh_simulator
    paused = http.get(
        sim.templates_url(), params={"status": "PAUSED"}, headers=sim.auth_headers
    ).json()
    assert [t["name"] for t in paused["data"]] == ["winter_sale"]
    bad = http.get(sim.templates_url(), params={"after": "!!"}, headers=sim.auth_headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == 100


def test_templates_need_the_token(fresh_simulator, http):
    response = http.get(fresh_simulator.templates_url())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190


def test_templates_are_loaded_from_a_json_file(tmp_path, http):
    path = tmp_path / "templates.json"
    data = [
        {"id": str(n), "name": f"t{n}", "language": "en_US", "status": "APPROVED"}
        for n in range(30)
    ]
    path.write_text(json.dumps({"data": data}))
    with start_simulator(templates=str(path)) as sim:
        pages = _all_pages(http, sim, sim.templates_url())
    assert [len(page) for page in pages] == [25, 5]
    assert [t["name"] for page in pages for t in page] == [f"t{n}" for n in range(30)]


def test_a_malformed_templates_file_stops_startup_with_its_name(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [{"id": "1"}]}')
    with pytest.raises(SimulatorError, match="exited with code 2"):
        start_simulator(templates=str(path))
