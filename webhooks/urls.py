from django.conf import settings
from django.urls import path

from webhooks import views

urlpatterns = [
    path("whatsapp/", views.whatsapp_webhook, name="whatsapp-webhook"),
]

if settings.WEBHOOK_BENCH_BARE_VIEW:
    urlpatterns.append(path("_bare/", views.bare, name="webhook-bench-bare"))
