"""sync_numbers (messaging.numbers.sync_all_numbers) as a django-q2 Schedule every 3 hours:
each account's portfolio and each number's messaging limit, quality and status from the
Graph API, well inside Meta's 200 management calls per hour per WABA. The webhooks carry
changes as they happen; this catches what they missed."""

from django.db import migrations

NAME = "wacampaigns sync numbers"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "messaging.numbers.sync_all_numbers",
            "schedule_type": "I",  # minutes
            "minutes": 180,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0014_reconcile_by_evidence"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create, remove)]
