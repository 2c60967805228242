"""The recharge money path: Request → verify → ``pay`` → grant + replies, exactly once.

See :mod:`device.recharge.processor` for the rules and :mod:`device.recharge.faults` for the crash points.
"""

from device.recharge.faults import FAULT_ENV, FAULT_POINTS, FaultPoints
from device.recharge.processor import RechargeProcessor, RechargeRefusal

__all__ = [
    "FAULT_ENV",
    "FAULT_POINTS",
    "FaultPoints",
    "IncomingEvent",
    "RechargeProcessor",
    "RechargeRefusal",
]
