"""Benchmarks: each module is a command that prints its figures (`python -m bench.<name>`)."""
