"""Send bodies used by the simulator tests."""

from __future__ import annotations

from messaging.simulator.templates import demo_template, example_components


def template_message(to: str = "5511987654321", callback: str | None = "out:1") -> dict:
    message = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "spring_promo",
            "language": {"code": "en_US"},
            "components": example_components(demo_template("spring_promo")),
        },
    }
    if callback is not None:
        message["biz_opaque_callback_data"] = callback
    return message
