"""openmart: open, self-hosted, OpenScale-style monitoring for deployed machine-learning models."""

from openmart.api import Binding, Mart, Subscription, connect
from openmart.errors import OpenmartError
from openmart.monitors.drift_tests import register as register_drift_test
from openmart.monitors.registry import register as register_monitor
from openmart.schema import Column, ColumnKind, ProblemType, SubscriptionSchema, infer_schema

__all__ = [
    "Binding",
    "Column",
    "ColumnKind",
    "Mart",
    "OpenmartError",
    "ProblemType",
    "Subscription",
    "SubscriptionSchema",
    "connect",
    "infer_schema",
    "register_drift_test",
    "register_monitor",
]
__version__ = "0.1.0"
