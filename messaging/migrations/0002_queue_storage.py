"""PostgreSQL storage tuning for the send queue (docs/engine-notes.md §2): room for HOT updates
and an autovacuum that keeps up with the churn of a busy queue. A no-op on SQLite."""

from django.db import migrations


def tune(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE messaging_outboundmessage SET (fillfactor = 85, "
        "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, "
        "autovacuum_vacuum_threshold = 1000)"
    )


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]
    operations = [migrations.RunPython(tune, migrations.RunPython.noop)]
