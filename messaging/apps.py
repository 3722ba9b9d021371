from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from messaging import (
            checks,  # noqa: F401  (registers the system checks)
            keeper,
        )
        from messaging.tasks import keep_dispatcher

        keeper.register(keep_dispatcher)
        post_spawn.connect(keeper.start, dispatch_uid="wacampaigns-keeper")
