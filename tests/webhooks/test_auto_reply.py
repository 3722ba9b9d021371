import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from tests.factories import SenderFactory
from tests.webhooks.payloads import messages_body, post, text_message
from webhooks.autoreply import answer
from webhooks.drain import drain
from webhooks.models import AutoReply, AutoReplyRule, InboundMessage

pytestmark = pytest.mark.django_db


class FakeUpstream(BaseHTTPRequestHandler):
    """A real loopback server playing both the Graph API and the LLM endpoint."""

    requests: list

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, self.headers.get("Authorization"), body))
        if self.path.endswith("/chat/completions"):
            last = body["messages"][-1]["content"]
            answer = {"choices": [{"message": {"role": "assistant", "content": f"LLM: {last}"}}]}
        else:
            answer = {"messages": [{"id": f"wamid.AR{len(self.server.seen)}"}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    settings.AUTO_REPLY_ENABLED = True
    settings.WHATSAPP_API_BASE_URL = base
    settings.WHATSAPP_API_VERSION = "v23.0"
    settings.WHATSAPP_ACCESS_TOKEN = "graph-token"
    settings.WHATSAPP_READ_TIMEOUT = 5
    settings.AUTO_REPLY_LLM_URL = ""
    settings.AUTO_REPLY_LLM_KEY = "llm-key"
    settings.AUTO_REPLY_MAX_PER_USER_PER_DAY = 2
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _inbound(sender, text, *, ago=timedelta(minutes=1), n=[0]):
    n[0] += 1
    return InboundMessage.objects.create(
        sender=sender,
        user_phone="+14152000001",
        wamid=f"wamid.IN{n[0]}",
        type="text",
        text=text,
        timestamp=timezone.now() - ago,
    )


def test_a_keyword_rule_answers_with_a_free_form_text_through_the_graph_api(upstream):
    sender = SenderFactory()
    AutoReplyRule.objects.create(keyword="hours", reply="We are open 9-17.")
    inbound = _inbound(sender, "  HOURS ")
    assert answer(inbound_id=inbound.pk) == "sent"
    path, auth, body = upstream.seen[0]
    assert path == f"/v23.0/{sender.phone_number_id}/messages"
    assert auth == "Bearer graph-token"
    assert body["messaging_product"] == "whatsapp"
    assert (body["to"], body["type"], body["text"]["body"]) == (
        "14152000001",
        "text",
        "We are open 9-17.",
    )
    reply = AutoReply.objects.get()
    assert (reply.source, reply.wamid, reply.error) == ("rule", "wamid.AR1", "")


def test_the_llm_hook_gets_the_conversation_and_its_answer_is_sent(upstream, settings):
    settings.AUTO_REPLY_LLM_URL = f"http://127.0.0.1:{upstream.server_port}/v1"
    sender = SenderFactory()
    _inbound(sender, "first question", ago=timedelta(minutes=5))
    inbound = _inbound(sender, "do you ship to Lisbon?")
    assert answer(inbound_id=inbound.pk) == "sent"
    llm_path, llm_auth, llm_body = upstream.seen[0]
    assert llm_path == "/v1/chat/completions" and llm_auth == "Bearer llm-key"
    assert [m["content"] for m in llm_body["messages"][1:]] == [
        "first question",
        "do you ship to Lisbon?",
    ]
    assert upstream.seen[1][2]["text"]["body"] == "LLM: do you ship to Lisbon?"
    assert AutoReply.objects.get().source == "llm"


def test_no_reply_outside_the_24_hour_window(upstream):
    sender = SenderFactory()
    AutoReplyRule.objects.create(keyword="hours", reply="9-17")
    inbound = _inbound(sender, "hours", ago=timedelta(hours=25))
    assert answer(inbound_id=inbound.pk) == "window closed"
    assert upstream.seen == [] and not AutoReply.objects.exists()


def test_replies_stop_at_the_per_user_daily_limit_and_never_repeat(upstream):
    sender = SenderFactory()
    AutoReplyRule.objects.create(keyword="hours", reply="9-17")
    results = [answer(inbound_id=_inbound(sender, "hours").pk) for _ in range(3)]
    assert results == ["sent", "sent", "limit reached"]
    assert answer(inbound_id=InboundMessage.objects.first().pk) == "already answered"
    assert len(upstream.seen) == 2


def test_nothing_happens_when_auto_reply_is_off(upstream, settings):
    settings.AUTO_REPLY_ENABLED = False
    AutoReplyRule.objects.create(keyword="hours", reply="9-17")
    assert answer(inbound_id=_inbound(SenderFactory(), "hours").pk) == "disabled"
    assert upstream.seen == []


def test_an_inbound_message_is_answered_by_a_task_after_the_apply_commits(
    upstream, client, django_capture_on_commit_callbacks
):
    sender = SenderFactory()
    AutoReplyRule.objects.create(keyword="hours", reply="9-17")
    ts = int(timezone.now().timestamp())
    body = messages_body(
        [text_message("wamid.X", "14152000001", "hours", ts)], sender.phone_number_id
    )
    post(client, json.dumps(body).encode())
    with django_capture_on_commit_callbacks(execute=True):
        drain()
    assert AutoReply.objects.get().wamid.startswith("wamid.AR")
