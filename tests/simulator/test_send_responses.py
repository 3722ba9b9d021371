"""The send endpoint answers like the Cloud API: success shape, auth and validation errors."""

from __future__ import annotations

import socket

import pytest

from tests.simulator.payloads import template_message


def test_accepted_send_has_the_documented_shape_and_a_wamid(fresh_simulator, http):
    sim = fresh_simulator
    response = http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message("+5511987654321")
    )
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+5511987654321", "wa_id": "5511987654321"}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.")
    assert message["message_status"] == "accepted"


def test_every_accepted_send_gets_a_different_wamid(fresh_simulator, http):
    sim = fresh_simulator
    wamids = {
        http.post(
            sim.messages_url("1065"),
            headers=sim.auth_headers,
            json=template_message(callback=f"out:{n}"),
        ).json()["messages"][0]["id"]
        for n in range(50)
    }
    assert len(wamids) == 50


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "test-token"])
def test_missing_or_wrong_token_is_401_with_code_190(fresh_simulator, http, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = http.post(
        fresh_simulator.messages_url("1065"), headers=headers, json=template_message()
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190
    assert fresh_simulator.stats()["accepted"] == 0


def _with_components(components: object) -> dict:
    message = template_message()
    message["template"]["components"] = components
    return message


def test_a_template_with_components_as_the_api_takes_them_is_accepted(fresh_simulator, http):
    sim = fresh_simulator
    body = _with_components([{"type": "body", "parameters": [_text("Ann"), _text("10%")]}])
    response = http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=body)
    assert response.status_code == 200


def _named(parameters: list[dict]) -> dict:
    message = _with_components([{"type": "body", "parameters": parameters}])
    message["template"]["name"] = "order_update"  # NAMED: {{first_name}}, {{order_id}}
    return message


def _text(value: str, name: str | None = None) -> dict:
    return {"type": "text", "text": value, **({"parameter_name": name} if name else {})}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_with_components([{"type": "body", "parameters": [_text("Ann")]}]), 132000),
        (_with_components([]), 132000),
        (_named([_text("Ann"), _text("A-1")]), 132012),
        (_named([_text("Ann", "first_name"), _text("A-1", "order")]), 132012),
        (_named([_text("Ann", "first_name")]), 132000),
    ],
)
def test_parameters_that_do_not_fit_a_known_template_are_refused(fresh_simulator, http, body, code):
    sim = fresh_simulator
    response = http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_named_template_takes_its_parameters_by_name_in_any_order(fresh_simulator, http):
    sim = fresh_simulator
    body = _named([_text("A-1", "order_id"), _text("Ann", "first_name")])
    response = http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=body)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"to": "5511987654321", "type": "text", "text": {"body": "x"}}, 100),
        ({"messaging_product": "sms", "to": "5511987654321"}, 100),
        ({"messaging_product": "whatsapp", "type": "template"}, 100),
        ({"messaging_product": "whatsapp", "to": "not-a-number", "type": "text"}, 131009),
        ({"messaging_product": "whatsapp", "to": "5511987654321", "type": "template"}, 100),
        (
            {
                "messaging_product": "whatsapp",
                "to": "5511987654321",
                "type": "template",
                "template": {"name": "spring_promo"},
            },
            100,
        ),
        (
            {**template_message(), "biz_opaque_callback_data": "x" * 513},
            131009,
        ),
        ([1, 2, 3], 100),
        # Components as JSON text in a string (what the sender once sent from PostgreSQL).
        (_with_components('[{"type": "body", "parameters": []}]'), 100),
        (_with_components([{"parameters": []}]), 100),
        (_with_components([{"type": "body", "parameters": '[{"type": "text"}]'}]), 100),
        (
            {"messaging_product": "whatsapp", "to": "5511987654321", "text": {"body": " "}},
            100,
        ),
    ],
)
def test_invalid_send_bodies_are_400_with_meta_codes(fresh_simulator, http, body, code):
    sim = fresh_simulator
    response = http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    assert sim.stats()["errors"] == {str(code): 1}


def test_body_that_is_not_json_is_400_code_100(fresh_simulator, http):
    sim = fresh_simulator
    response = http.post(sim.messages_url("1065"), headers=sim.auth_headers, data=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


def test_strict_templates_answers_132001_for_an_unknown_translation(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(strict_templates=True)
    message = template_message()
    ok = http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=message)
    message["template"]["language"]["code"] = "en"
    wrong = http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=message)
    assert ok.status_code == 200
    assert wrong.status_code == 404
    assert wrong.json()["error"]["code"] == 132001


def test_keep_alive_serves_many_requests_on_one_connection(fresh_simulator):
    sim = fresh_simulator
    host, port = sim.base_url.removeprefix("http://").split(":")
    request = (
        f"POST /v23.0/1065/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {sim.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        for _ in range(3):
            conn.sendall(request)
            reply = conn.recv(65536)
            assert reply.startswith(b"HTTP/1.1 400 ")
            assert b"Connection: close" not in reply
    assert sim.stats()["send_requests"] == 3


def test_connection_close_is_honoured(fresh_simulator):
    sim = fresh_simulator
    host, port = sim.base_url.removeprefix("http://").split(":")
    request = b"GET /_sim/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    # recv() returned b"": the server closed the connection after one answer.
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in data
