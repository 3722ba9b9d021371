from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks & inbox"

    def ready(self) -> None:
        from messaging import keeper
        from webhooks.tasks import keep_draining

        keeper.register(keep_draining)
