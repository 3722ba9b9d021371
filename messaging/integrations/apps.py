from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """The ways in and out for other systems: the HTTP API, outbound events, staff alerts."""

    name = "messaging.integrations"
    label = "integrations"  # tables, migrations and permissions keep their names
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging.integrations import lookup_cache

        lookup_cache.connect_signals()
