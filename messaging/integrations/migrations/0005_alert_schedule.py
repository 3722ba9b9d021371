"""The every-minute alert evaluation (raise, remind, resolve)."""

from django.db import migrations

NAME = "integrations: evaluate alerts"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "messaging.integrations.alerts.service.evaluate",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0004_alerts")]

    operations = [migrations.RunPython(create, remove)]
