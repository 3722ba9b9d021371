"""sync_templates for every account (messaging.templates.sync_all_templates) as a django-q2
Schedule every hour. The template status webhook carries pauses and approvals as they happen;
this catches one that never arrived: a template approved on Meta's side shows up in the wizard
within the hour, and a paused one pauses its campaigns as the webhook would have. One or a few
management calls per account, well inside Meta's 200 per hour per WABA."""

from django.db import migrations

NAME = "wacampaigns sync templates"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "messaging.templates.sync_all_templates",
            "schedule_type": "I",  # minutes
            "minutes": 60,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0015_sync_numbers_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create, remove)]
