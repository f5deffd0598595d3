"""Former home of the emulated interface box: now :mod:`bridge.testing.box`; kept so that
old imports work.
"""

from bridge.testing.box import (
    EMULATED_CAPABILITIES,
    BoxCore,
    BoxModel,
    EmulatedBench,
    EmulatedBox,
    FirmwareBox,
    FirmwareCore,
    emulated_bench,
    load_libboxcore,
)

__all__ = [
    "EMULATED_CAPABILITIES",
    "BoxCore",
    "BoxModel",
    "EmulatedBench",
    "EmulatedBox",
    "FirmwareBox",
    "FirmwareCore",
    "emulated_bench",
    "load_libboxcore",
]
