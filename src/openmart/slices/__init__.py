"""Slices and root cause (layer 3): quality by slice — categorical values, numeric bins on the
reference's quantiles, user-written expressions — the search for the slices that cost the most,
and the features whose drift best explains a metric's change. docs/slices.md."""

from openmart.slices.rootcause import RootCause
from openmart.slices.search import SliceResult

__all__ = ["RootCause", "SliceResult"]
