"""In-process events: `outbound_event.send(sender=None, event_type=…, data=…)` after commit.

A project embedding this app connects a receiver instead of (or besides) a subscription.
"""

from django.dispatch import Signal

outbound_event = Signal()
