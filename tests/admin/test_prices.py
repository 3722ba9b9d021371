"""The price table staff keep in admin for the plan's cost estimate."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from campaigns.models import TemplatePrice

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:campaigns_templateprice_add")


def test_staff_add_a_price_and_codes_are_read_in_any_case(admin_client):
    response = admin_client.post(
        ADD_URL, {"country": "pt", "category": "MARKETING", "price": "0.0514", "currency": "eur"}
    )
    assert response.status_code == 302
    price = TemplatePrice.objects.get()
    assert (price.country, price.currency, price.price) == ("PT", "EUR", Decimal("0.0514"))


@pytest.mark.parametrize(
    "data, field",
    [
        ({"country": "XX", "price": "0.05", "currency": "USD"}, "country"),
        ({"country": "PT", "price": "0.05", "currency": "US"}, "currency"),
        ({"country": "PT", "price": "-1", "currency": "USD"}, "price"),
    ],
)
def test_a_bad_price_row_is_a_field_error(admin_client, data, field):
    response = admin_client.post(ADD_URL, {"category": "UTILITY", **data})
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not TemplatePrice.objects.exists()


def test_one_price_per_country_and_category(admin_client):
    TemplatePrice.objects.create(country="PT", category="UTILITY", price="0.01")
    response = admin_client.post(
        ADD_URL, {"country": "PT", "category": "UTILITY", "price": "0.02", "currency": "USD"}
    )
    assert response.status_code == 200
    assert TemplatePrice.objects.get().price == Decimal("0.01")
