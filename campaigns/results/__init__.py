"""What a campaign achieved, for staff: figures with one definition each, the live snapshot,
the per-minute chart, per-template comparison and failures by code.

Reads across campaigns, messaging and webhooks (replies); never writes, except
`split.promote_template`, which goes through its own service.
"""
