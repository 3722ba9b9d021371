"""Alerts to staff: conditions checked every minute, notified once, resolved when they clear."""
