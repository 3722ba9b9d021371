import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Contact, Suppression, WhatsAppAccount
from messaging.models import OutboundMessage, to_numbers
from tests import factories

pytestmark = pytest.mark.django_db

TOKEN = "EAAG-very-secret-token-value"


@pytest.mark.parametrize(
    "name",
    ["campaign", "messagetemplate", "sendernumber", "whatsappaccount", "contact", "suppression"],
)
def test_changelist_and_add_pages_render(admin_client, name, sender, template):
    factories.CampaignFactory(sender=sender)
    factories.ContactFactory()
    factories.SuppressionFactory()
    assert admin_client.get(reverse(f"admin:campaigns_{name}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:campaigns_{name}_add")).status_code == 200


def test_synced_template_is_entirely_read_only(admin_client, account):
    template = factories.TemplateFactory(account=account, name="synced", synced_at=timezone.now())
    url = reverse("admin:campaigns_messagetemplate_change", args=[template.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="name"' not in page and 'name="status"' not in page

    admin_client.post(url, {"name": "renamed", "language": "fr", "status": "PAUSED"})

    template.refresh_from_db()
    assert (template.name, template.language, template.status) == ("synced", "en_US", "APPROVED")


def test_unsynced_template_stays_editable(admin_client, account):
    template = factories.TemplateFactory(account=account, name="draft_tpl")
    url = reverse("admin:campaigns_messagetemplate_change", args=[template.pk])
    assert 'name="name"' in admin_client.get(url).content.decode()


def test_template_list_shows_name_language_category_status(admin_client, account):
    factories.TemplateFactory(
        account=account, name="welcome", language="pt_BR", status="PAUSED", category="MARKETING"
    )
    page = admin_client.get(reverse("admin:campaigns_messagetemplate_changelist")).content
    assert b"welcome" in page and b"pt_BR" in page and b"MARKETING" in page and b"PAUSED" in page


@override_settings(WHATSAPP_ACCESS_TOKEN=TOKEN, WHATSAPP_APP_SECRET="app-secret-xyz")
def test_sender_pages_never_show_a_token(admin_client, sender):
    sender.learned_rate = 42.5
    sender.save()
    pages = [
        admin_client.get(reverse("admin:campaigns_sendernumber_changelist")),
        admin_client.get(reverse("admin:campaigns_sendernumber_change", args=[sender.pk])),
        admin_client.get(
            reverse("admin:campaigns_whatsappaccount_change", args=[sender.account_id])
        ),
    ]
    for response in pages:
        assert response.status_code == 200
        assert TOKEN.encode() not in response.content
        assert b"app-secret-xyz" not in response.content
        assert b"token" not in response.content.lower().replace(b"csrfmiddlewaretoken", b"")
    change = pages[1].content.decode()
    assert "42.5" in change and 'name="learned_rate"' not in change  # learned rate read-only
    assert 'name="rate_mps"' in change


def test_clear_auth_failure_action_clears_only_the_flag(admin_client):
    failed = factories.AccountFactory(auth_failed_at=timezone.now())
    admin_client.post(
        reverse("admin:campaigns_whatsappaccount_changelist"),
        {"action": "clear_auth_failure", ACTION_CHECKBOX_NAME: [failed.pk]},
    )
    failed.refresh_from_db()
    assert failed.auth_failed_at is None
    assert WhatsAppAccount.objects.filter(auth_failed_at__isnull=False).count() == 0


def test_contact_opt_out_and_back_in_go_through_the_suppression_list(admin_client):
    contact = factories.ContactFactory(phone="+14155550123")
    url = reverse("admin:campaigns_contact_changelist")

    admin_client.post(url, {"action": "opt_out", ACTION_CHECKBOX_NAME: [contact.pk]})
    contact.refresh_from_db()
    assert contact.opted_out_at is not None
    assert Suppression.objects.get(phone="+14155550123").source == "staff"

    admin_client.post(url, {"action": "opt_in", ACTION_CHECKBOX_NAME: [contact.pk]})
    contact.refresh_from_db()
    assert contact.opted_out_at is None
    assert not Suppression.objects.filter(phone="+14155550123").exists()


def test_a_saved_contacts_number_cannot_be_changed_but_the_rest_can(admin_client):
    # Its queue rows carry the number and are found through the contact (to_numbers): a
    # new number would hide them from opt-out cancellation, the inbox and erasure.
    contact = factories.ContactFactory(phone="+14155550123", name="Ann")
    queued = factories.OutboundMessageFactory(contact=contact)
    url = reverse("admin:campaigns_contact_change", args=[contact.pk])
    assert 'name="phone"' not in admin_client.get(url).content.decode()
    assert (
        'name="phone"' in admin_client.get(reverse("admin:campaigns_contact_add")).content.decode()
    )

    response = admin_client.post(
        url, {"phone": "+14155550999", "name": "Ann B", "attributes": "{}", "wa_id": ""}
    )

    assert response.status_code == 302
    contact.refresh_from_db()
    assert (contact.phone, contact.name) == ("+14155550123", "Ann B")
    assert OutboundMessage.objects.filter(to_numbers(["+14155550123"])).get() == queued


def test_contact_search_matches_a_phone_written_any_way(admin_client):
    factories.ContactFactory(phone="+14155550123", name="Wanted")
    factories.ContactFactory(phone="+14155550999", name="Other")
    page = admin_client.get(
        reverse("admin:campaigns_contact_changelist"), {"q": "+1 (415) 555-0123"}
    ).content
    assert b"Wanted" in page and b"Other" not in page


def test_suppression_add_normalises_and_marks_the_contact(admin_client):
    contact = factories.ContactFactory(phone="+14155550123")
    response = admin_client.post(
        reverse("admin:campaigns_suppression_add"),
        {"phone": "+1 415-555-0123", "source": "staff", "reason": "asked by phone"},
    )
    assert response.status_code == 302
    entry = Suppression.objects.get()
    assert (entry.phone, entry.reason) == ("+14155550123", "asked by phone")
    contact.refresh_from_db()
    assert contact.opted_out_at is not None


def test_suppression_add_refuses_a_bad_number(admin_client):
    response = admin_client.post(
        reverse("admin:campaigns_suppression_add"), {"phone": "12", "source": "staff"}
    )
    assert response.status_code == 200
    assert "is not a valid phone number" in response.content.decode()
    assert Suppression.objects.count() == 0


def test_suppression_delete_unsuppresses_the_contact(admin_client):
    contact = factories.ContactFactory(phone="+14155550123", opted_out_at=timezone.now())
    entry = factories.SuppressionFactory(phone="+14155550123")
    admin_client.post(
        reverse("admin:campaigns_suppression_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [entry.pk], "post": "yes"},
    )
    assert Suppression.objects.count() == 0
    contact.refresh_from_db()
    assert contact.opted_out_at is None
    assert Contact.objects.count() == 1


def test_admin_index_lists_campaigns_and_the_queue(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:campaigns_campaign_changelist") in page
    assert reverse("admin:messaging_outboundmessage_changelist") in page
