"""Admin for contacts and the suppression list; opt-outs go through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from campaigns.admin.audiences import ContactAudienceActions
from campaigns.admin_helpers import CappedCountPaginator, confirm_action
from campaigns.forms import SuppressionForm
from campaigns.models import ERASED_PHONE_PREFIX, Contact, Suppression
from campaigns.suppression import phone_hash
from messaging.policy.optout import opt_in, opt_out


def _normalise_phone_search(term: str) -> str:
    digits = "".join(ch for ch in term if ch.isdigit())
    return f"+{digits}" if digits and len(digits) >= 6 else term.strip()


@admin.register(Contact)
class ContactAdmin(ContactAudienceActions, admin.ModelAdmin[Contact]):
    list_display = ["phone", "name", "wa_id", "opted_out_at", "created_at"]
    list_filter = [("opted_out_at", admin.EmptyFieldListFilter)]
    # Exact matches only: the contacts table is large and these columns are indexed.
    search_fields = ["=phone", "=wa_id"]
    search_help_text = "Exact phone number (any formatting) or WhatsApp id."
    readonly_fields = ["opted_out_at", "created_at"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["opt_out", "opt_in", "forget", "add_to_list", "draft_from_selection"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A contact's number is who it is: its queue rows carry the same number and are found
        # through it (messaging.models.to_numbers), so it is set once, when the contact is
        # added. Only erasure rewrites it, in the contact and its rows at once.
        return [*self.readonly_fields] if obj is None else ["phone", *self.readonly_fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Queue rows point at contacts without a database FK (import speed): a contact is
        # erased in place ("Forget" below), never deleted.
        return False

    def has_forget_permission(self, request: HttpRequest) -> bool:
        # Erasure is what deleting would be: it needs the delete permission on contacts.
        return super().has_delete_permission(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Contact], search_term: str
    ) -> tuple[QuerySet[Contact], bool]:
        if not search_term:
            return queryset, False
        phone = _normalise_phone_search(search_term)
        return queryset.filter(phone=phone) | queryset.filter(wa_id=search_term.strip()), False

    @admin.action(description="Opt out (suppress) selected contacts", permissions=["change"])
    def opt_out(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        phones = list(queryset.values_list("phone", flat=True))
        result = opt_out(
            phones=phones, source=Suppression.Source.STAFF, reason=f"Opted out by {request.user}"
        )
        self.message_user(
            request,
            f"Opted out {result.numbers} contact(s); they will not be messaged "
            f"({result.cancelled} queued message(s) cancelled).",
        )

    @admin.action(description="Opt back in (unsuppress) selected contacts", permissions=["change"])
    def opt_in(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        phones = list(queryset.values_list("phone", flat=True))
        opt_in(phones=phones)
        self.message_user(request, f"Opted {len(phones)} contact(s) back in.")

    @admin.action(
        description="Forget (erase) selected contacts, keeping them suppressed",
        permissions=["forget"],
    )
    def forget(self, request: HttpRequest, queryset: QuerySet[Contact]) -> Any:
        # The contacts app must not import the queue's: erasure spans messaging and webhooks.
        from messaging.erasure import forget_contact

        queryset = queryset.exclude(phone__startswith=ERASED_PHONE_PREFIX)
        if not request.POST.get("post"):
            return confirm_action(
                self,
                request,
                queryset,
                action="forget",
                title="Erase contacts?",
                question="Erase these contacts everywhere (queue, inbox, status log, webhook "
                "bodies)? Only a hash of each number is kept, so they are never messaged "
                "again. This cannot be undone.",
            )
        phones = list(queryset.values_list("phone", flat=True))
        for phone in phones:
            forget_contact(phone)
        self.message_user(request, f"Erased {len(phones)} contact(s); they stay suppressed.")
        return None


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin[Suppression]):
    form = SuppressionForm
    list_display = ["phone", "source", "reason", "created_at"]
    list_filter = ["source"]
    search_fields = ["=phone"]
    search_help_text = "Exact phone number (any formatting)."
    fields = ["phone", "source", "reason", "created_at"]
    readonly_fields = ["created_at"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Suppression], search_term: str
    ) -> tuple[QuerySet[Suppression], bool]:
        if not search_term:
            return queryset, False
        # By hash, so an erased contact's entry is found too (its clear number is gone).
        return queryset.filter(phone_hash=phone_hash(_normalise_phone_search(search_term))), False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Changing the number of an entry would silently unsuppress the old one.
        return ["phone", *self.readonly_fields] if obj is not None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # Through the service, so the contact is marked opted out too.
        phone: str = form.cleaned_data["phone"]  # required and E.164 on the add form
        opt_out(phones=[phone], source=obj.source, reason=obj.reason)
        obj.pk = Suppression.objects.get(phone_hash=phone_hash(phone)).pk

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An erased contact's entry (no number, only the hash) is what keeps them unmessaged.
        if obj is not None and obj.phone is None:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        if obj.phone is not None:  # an erased entry has none and stays (has_delete_permission)
            opt_in(phones=[obj.phone])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> None:
        # Erased entries (no number) stay: they are what keeps those people unmessaged.
        phones = queryset.values_list("phone", flat=True)
        opt_in(phones=[phone for phone in phones if phone is not None])
