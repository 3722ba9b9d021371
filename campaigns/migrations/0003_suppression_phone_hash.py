"""Suppression.phone_hash (campaigns.suppression), filled for existing rows, then unique."""

from django.db import migrations, models


def fill_hashes(apps, schema_editor):
    from campaigns.suppression import phone_hash

    Suppression = apps.get_model("campaigns", "Suppression")
    rows = list(Suppression.objects.filter(phone_hash="").only("pk", "phone"))
    for row in rows:
        row.phone_hash = phone_hash(row.phone)
    Suppression.objects.bulk_update(rows, ["phone_hash"], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_alter_contact_phone_alter_contact_wa_id_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="phone_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_hashes, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="suppression",
            constraint=models.UniqueConstraint(
                fields=("phone_hash",), name="suppression_phone_hash_unique"
            ),
        ),
        migrations.AlterField(
            model_name="suppression",
            name="phone",
            field=models.CharField(
                blank=True, max_length=20, null=True, unique=True, verbose_name="phone (E.164)"
            ),
        ),
        migrations.AlterField(
            model_name="suppression",
            name="source",
            field=models.CharField(
                choices=[
                    ("staff", "Staff"),
                    ("keyword", "Keyword"),
                    ("user_preferences", "User Preferences"),
                    ("api_error", "Api Error"),
                    ("import", "Import"),
                    ("erasure", "Erasure"),
                ],
                default="staff",
                max_length=32,
            ),
        ),
    ]
