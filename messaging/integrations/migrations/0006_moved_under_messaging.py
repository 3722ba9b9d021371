"""The app moved from integrations/ to messaging/integrations/ (label unchanged): the cluster
schedules that an earlier migration created name their task by its old module path."""

from django.db import migrations

OLD, NEW = "integrations.", "messaging.integrations."


def rename(apps, schema_editor, old=OLD, new=NEW):
    Schedule = apps.get_model("django_q", "Schedule")
    for schedule in Schedule.objects.filter(func__startswith=old):
        schedule.func = new + schedule.func[len(old) :]
        schedule.save(update_fields=["func"])


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0005_alert_schedule")]

    operations = [migrations.RunPython(rename, rename_back)]
