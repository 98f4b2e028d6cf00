"""Local Stripe API emulator (checkout sessions) with fault injection, for tests and benchmarks."""

from .app import EmulatorApp
from .faults import FaultRule, FaultSet
from .server import EmulatorServer
from .state import EmulatorState, RecordedRequest

__all__ = [
    "EmulatorApp",
    "EmulatorServer",
    "EmulatorState",
    "FaultRule",
    "FaultSet",
    "RecordedRequest",
]
