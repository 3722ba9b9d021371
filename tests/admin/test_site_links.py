import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_view_site_link_leads_to_a_page(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert 'href="/"' in index  # admin's "View site"
    response = admin_client.get("/", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("admin:index")
