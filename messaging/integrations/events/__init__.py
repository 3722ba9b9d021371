"""Outbound events: a transactional outbox delivered by the cluster, plus Django signals.

Writers call `publish` (or `publish_message_statuses`) inside the transaction of the change;
`delivery` sends the rows; `signals.outbound_event` fires on commit for in-process listeners.
"""
