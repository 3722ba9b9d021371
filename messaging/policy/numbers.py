"""The import rules that look at a number alone, with no database and no Django: the
import's parse process (messaging.campaign_import.parse_process) applies them where the
rows are read. `messaging.policy.imports` is where the rest of the import policy lives and
where callers take them from."""

from __future__ import annotations

import phonenumbers

US_MARKETING_REASON = "Meta does not deliver marketing templates to US numbers"


def us_marketing_reason(phone: str) -> str:
    """The refusal for a marketing template to `phone` (E.164), or ""."""
    if not phone.startswith("+1"):
        return ""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return ""
    return US_MARKETING_REASON if region == "US" else ""
