"""The models' common base and the value types of reports (numbers that may be NaN, timestamps, steps)."""


from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
)

from ..bootstrap.agent.report import (  # the report's limits, defined once, with the agent that sends it
    INT64_MAX,
    MAX_TIMESTAMP,
)

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
               "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}


def _number(value: Any) -> Any:
    """Accept ints and floats (and the strings NaN/Infinity/-Infinity); refuse booleans and other strings."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        try:
            return _NON_FINITE[value.strip().lower()]
        except KeyError:
            raise ValueError("must be a number (or one of the strings NaN, Infinity, -Infinity)") from None
    if isinstance(value, int | float):
        return float(value)
    raise ValueError("must be a number")


def _from_json_number(value: float | str) -> float:
    return float(value) if isinstance(value, float) else _NON_FINITE[value.lower()]


def json_number(value: float) -> float | str:
    """JSON has no NaN or infinity: they travel as the strings NaN, Infinity and -Infinity."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


# Hot-path types (a report carries thousands) are pydantic-native and strict: no Python call per value,
# booleans refused as numbers, fractions refused as steps.
MetricValue = Annotated[
    float, BeforeValidator(_number), PlainSerializer(json_number, return_type=Any, when_used="json")
]
"""A metric value: any float including NaN and infinities (they are signals, e.g. a diverging loss)."""
ReportedValue = Annotated[
    Annotated[float, Strict()] | Literal["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"],
    AfterValidator(_from_json_number), PlainSerializer(json_number, return_type=Any, when_used="json"),
]
"""A metric value as a pod sends it: a JSON number, a NaN/Infinity literal, or one of those as a string."""
Timestamp = Annotated[float, Strict(), Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]
"""Seconds since the epoch, finite; booleans are refused."""
Int64 = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX)]
"""A non-negative 64-bit integer (SQLite's INTEGER range); booleans and fractions are refused."""


class _Model(BaseModel):
    """Schemas build on first use, not at import: the TUI paints its first frame before it needs any."""

    model_config = ConfigDict(defer_build=True)


