"""The retention purge (messaging.retention) as a django-q2 Schedule every 15 minutes."""

from django.db import migrations

NAME = "wacampaigns retention purge"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "messaging.retention.scheduled_purge",
            "schedule_type": "I",
            "minutes": 15,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0004_alter_outboundmessage_campaign_and_more"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create, remove)]
