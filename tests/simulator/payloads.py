"""Send bodies used by the simulator tests."""

from __future__ import annotations


def template_message(to: str = "5511987654321", callback: str | None = "out:1") -> dict:
    message = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "spring_promo",
            "language": {"code": "en_US"},
            # Its body's two variables ("Hi {{1}}, everything in store is {{2}} off").
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {"type": "text", "text": "20%"},
                    ],
                }
            ],
        },
    }
    if callback is not None:
        message["biz_opaque_callback_data"] = callback
    return message
