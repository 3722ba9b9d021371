"""Policy tests share the engine tests' simulator and fixtures."""

from tests.engine.conftest import _fresh_pacing, sim, simulator_process  # noqa: F401
