import pytest
from django.db import IntegrityError, connection

from tests.factories import OutboundMessageFactory

pytestmark = pytest.mark.django_db


def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql"


def test_a_contact_cannot_be_queued_twice_in_one_campaign():
    message = OutboundMessageFactory()
    with pytest.raises(IntegrityError):
        OutboundMessageFactory(
            campaign=message.campaign, contact=message.contact, template=message.template
        )


def test_redis_answers(redis_client):
    assert redis_client.ping() is True
