"""The cluster's watchdog: a django-q2 Schedule every minute that keeps the dispatcher alive."""

from django.db import migrations


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="wacampaigns sender watchdog",
        defaults={"func": "messaging.tasks.watchdog", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="wacampaigns sender watchdog").delete()


class Migration(migrations.Migration):
    dependencies = [("messaging", "0002_queue_storage"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]
    operations = [migrations.RunPython(create, remove)]
