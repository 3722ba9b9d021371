"""Campaign.expired_reported_at: `campaign.expired` is reported once (messaging.policy.gate
.report_expiry).

Campaigns that already expired were reported by the rule this replaces (their first row
expired by the campaign's valid_until): they are marked, so rows that come back to them later
do not report them again. The moment is their valid_until, when that expiry began.
"""

from django.db import migrations, models
from django.db.models import Exists, OuterRef

EXPIRED = 22  # messaging.models.OutboundStatus.EXPIRED
EXPIRED_DETAIL = "could not go before the campaign's valid_until"  # gate.EXPIRED_DETAIL


def mark_reported(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    OutboundMessage = apps.get_model("messaging", "OutboundMessage")
    expired_rows = OutboundMessage.objects.filter(
        campaign_id=OuterRef("pk"), status=EXPIRED, error_detail=EXPIRED_DETAIL
    )
    Campaign.objects.filter(Exists(expired_rows), valid_until__isnull=False).update(
        expired_reported_at=models.F("valid_until")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0014_canary_report"),
        ("messaging", "0018_message_expired_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="expired_reported_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(mark_reported, migrations.RunPython.noop),
    ]
