"""Contact lists through the API: read a list, add contacts to it (phone, name, attributes).

Adding goes through the same service as the admin's CSV upload to a list
(`messaging.audiences.add_rows_to_list`): numbers are checked and normalised as an import
does, contacts are created or updated, members are added once, all or nothing.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from campaigns.models import ContactList
from messaging.audiences import add_rows_to_list
from messaging.campaign_import.audience import RowsAudience
from messaging.integrations.api.auth import require
from messaging.integrations.api.errors import ApiError
from messaging.integrations.api.messages import ERRORS
from messaging.integrations.api.schemas import ErrorOut, RejectionOut
from messaging.integrations.models import ApiKey

router = Router(tags=["lists"])
RESERVED = ("phone", "name")


class ListContactIn(Schema):
    phone: str = Field(..., max_length=64)
    name: str = Field("", max_length=200)
    # Become the contact's attributes (segments and template variables read them).
    attributes: dict[str, str] = Field(default_factory=dict)


class ListAddIn(Schema):
    contacts: list[ListContactIn] = Field(..., min_length=1, max_length=100_000)
    # For numbers written without a country code; default WHATSAPP_DEFAULT_REGION.
    default_region: str | None = Field(None, max_length=2)


class ListOut(Schema):
    id: int
    name: str
    description: str
    members: int


class ListAddOut(Schema):
    contact_list: ListOut
    added: int
    already: int
    rejected: int
    duplicates: int
    rejections: list[RejectionOut]


def _list(list_id: int) -> ContactList:
    found = ContactList.objects.annotate(n=Count("members")).filter(pk=list_id).first()
    if found is None:
        raise ApiError(404, "not_found", f"no contact list {list_id}", "list_id")
    return found


def list_out(contact_list: ContactList) -> dict[str, Any]:
    return {
        "id": contact_list.pk,
        "name": contact_list.name,
        "description": contact_list.description,
        "members": contact_list.n,  # type: ignore[attr-defined]
    }


def _rows(payload: ListAddIn) -> list[dict[str, str]]:
    rows = []
    for i, contact in enumerate(payload.contacts):
        for reserved in RESERVED:
            if reserved in contact.attributes:
                raise ApiError(
                    400,
                    "invalid_attributes",
                    f"{reserved!r} is not an attribute name",
                    f"contacts[{i}].attributes",
                )
        rows.append({"phone": contact.phone, "name": contact.name, **contact.attributes})
    return rows


@router.get("/lists/{list_id}", response={200: ListOut, **ERRORS, 429: ErrorOut})
def detail(request: HttpRequest, list_id: int) -> Status:
    require(request, ApiKey.Scope.CONTACTS_READ)
    return Status(200, list_out(_list(list_id)))


@router.post(
    "/lists/{list_id}/contacts",
    response={200: ListAddOut, **ERRORS, 429: ErrorOut},
    summary="Add contacts to a list",
)
def add_contacts(request: HttpRequest, list_id: int, payload: ListAddIn) -> Status:
    """Rows whose number cannot be read are rejected with the reason and their position
    (row 1 = the first contact); the others are added. Nothing is written if the request
    itself is refused."""
    require(request, ApiKey.Scope.CONTACTS_WRITE)
    contact_list = _list(list_id)
    rows = _rows(payload)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    try:
        result = add_rows_to_list(
            contact_list=contact_list,
            audience=RowsAudience(rows, columns=columns),
            default_region=payload.default_region,
        )
    except ValueError as exc:  # an unknown region, a refused audience: nothing was written
        raise ApiError(400, "refused", str(exc), "contacts") from exc
    return Status(
        200,
        {
            "contact_list": list_out(_list(list_id)),
            "added": result.added,
            "already": result.already,
            "rejected": result.rejected,
            "duplicates": result.duplicates,
            "rejections": [vars(r) for r in result.rejections],
        },
    )
