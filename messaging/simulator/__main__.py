"""`python -m messaging.simulator`: the simulator without Django (starts in well under 1 s)."""

from messaging.simulator.cli import main

main()
