"""Rejected webhook items go with their body at the database level too.

Django emulates CASCADE in Python, but the retention purge deletes old bodies with plain SQL
in batches (messaging/retention.py); without ON DELETE CASCADE a body that had a rejected
item would make that DELETE fail, and with it every purge after.
"""

from django.db import migrations

_SQL = """
DO $$
DECLARE name text;
BEGIN
  FOR name IN SELECT conname FROM pg_constraint
      WHERE conrelid = 'webhooks_rejectedwebhookitem'::regclass AND contype = 'f' LOOP
    EXECUTE format('ALTER TABLE webhooks_rejectedwebhookitem DROP CONSTRAINT %I', name);
  END LOOP;
  ALTER TABLE webhooks_rejectedwebhookitem ADD CONSTRAINT rejectedwebhookitem_raw_event_fk
    FOREIGN KEY (raw_event_id) REFERENCES webhooks_rawevent (id)
    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
END $$;
"""


def cascade(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # SQLite (the demo) purges via the ORM
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(_SQL)  # no parameters: format()'s %I stays as it is


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0005_staff_reply")]

    operations = [migrations.RunPython(cascade, migrations.RunPython.noop)]
