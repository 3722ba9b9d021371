import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webhooks.payloads import post, status, statuses_body
from webhooks.drain import drain
from webhooks.models import RawEvent

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
# Shapes near the real one, so the fuzz reaches the parser and the apply, not only the 400s.
near_shape = st.fixed_dictionaries(
    {
        "object": st.just("whatsapp_business_account"),
        "entry": st.lists(
            st.fixed_dictionaries(
                {
                    "id": json_values,
                    "changes": st.lists(
                        st.fixed_dictionaries(
                            {
                                "field": st.sampled_from(
                                    [
                                        "messages",
                                        "user_preferences",
                                        "message_template_status_update",
                                        "message_template_quality_update",
                                        "phone_number_quality_update",
                                        "account_update",
                                    ]
                                ),
                                "value": st.dictionaries(
                                    st.sampled_from(
                                        [
                                            "statuses",
                                            "messages",
                                            "contacts",
                                            "metadata",
                                            "user_preferences",
                                            "event",
                                            "display_phone_number",
                                            "message_template_id",
                                        ]
                                    ),
                                    json_values,
                                    max_size=4,
                                ),
                            }
                        ),
                        max_size=3,
                    ),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    }
)
REAL = json.dumps(statuses_body([status("wamid.F", "failed", code=131049)])).encode()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_signed_bodies_never_get_a_500(client, body):
    assert post(client, body).status_code in (200, 400)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=len(REAL)))
def test_truncated_signed_bodies_never_get_a_500(client, cut):
    assert post(client, REAL[:cut]).status_code == (200 if cut == len(REAL) else 400)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=near_shape)
def test_near_shaped_bodies_are_stored_and_applied_without_error(client, data):
    assert post(client, json.dumps(data).encode()).status_code == 200
    drain()
    assert not RawEvent.objects.filter(applied_at__isnull=True).exists()
    # No body fails as a whole: an error only ever reports items set aside, which staff see.
    for raw in RawEvent.objects.exclude(error=""):
        kept = raw.rejected.count()
        assert kept and raw.error.startswith(f"{kept} item(s) not applied"), raw.error
