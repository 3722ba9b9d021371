"""A local stand-in for the WhatsApp Cloud API (Graph API), for the demo, tests and benchmarks.

It is a small asyncio HTTP/1.1 server that keeps all state in memory: run it with
`python -m messaging.simulator` or `manage.py simulate_whatsapp`, or from Python with
`messaging.simulator.harness.start_simulator()`. See docs/benchmarks.md "Simulator".
"""
