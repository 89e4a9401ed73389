import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iot_lake.silver.metrics import (
    IDENTITY,
    METRICS,
    Conversion,
    MetricSpec,
    canonical_columns,
    metric_ranges,
    metric_spec,
    unit_conversions,
)

SMALL = {
    "temperature": MetricSpec(
        "temperature", "degC", -60.0, 100.0, {"degF": Conversion(5 / 9, -32)}
    ),
    "power": MetricSpec("power", "W", -1e6, 1e6, {"kW": Conversion(1e3)}),
}


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        ("temperature", 212.0, "degF", (100.0, "degC")),
        ("temperature", 32.0, "degF", (0.0, "degC")),
        ("temperature", -40.0, "degF", (-40.0, "degC")),
        ("temperature", 300.0, "K", (26.850000000000023, "degC")),
        ("temperature", 21.5, "degC", (21.5, "degC")),
        ("temperature", 21.5, None, (21.5, "degC")),
        ("temperature", 500.0, "degR", (500.0, "degR")),
        ("speed", 10.0, "mph", (16.09344, "km/h")),
        ("power", 1.5, "kW", (1500.0, "W")),
        ("battery", 3900.0, "mV", (3.9, "V")),
        ("humidity", 45.0, "%", (45.0, "pct")),
    ],
    ids=[
        "boiling-degF",
        "freezing-degF",
        "minus-40-degF",
        "kelvin",
        "canonical",
        "no-unit-is-canonical",
        "unknown-unit-kept",
        "mph",
        "kW",
        "mV",
        "percent-alias",
    ],
)
def test_to_canonical(metric, value, unit, expected):
    spec = metric_spec(metric)
    assert spec is not None
    assert spec.to_canonical(value, unit) == pytest.approx(expected)


def test_unknown_metric_is_not_in_the_catalog():
    assert metric_spec("co2") is None


@pytest.mark.parametrize("spec", list(METRICS.values()), ids=list(METRICS))
def test_every_entry_is_consistent(spec):
    assert spec.minimum < spec.maximum
    assert spec.accepted_units[spec.unit] == IDENTITY
    assert spec.unit not in spec.conversions
    assert all(conversion.scale > 0 for conversion in spec.conversions.values())


def test_canonical_columns_match_the_scalar_conversion():
    readings = pl.DataFrame(
        {
            "metric": ["temperature"] * 5 + ["power", "power", "co2", "co2"],
            "reported_value": [69.8, 21.0, 21.0, 300.0, 5.0, 2.5, 900.0, 412.0, 400.0],
            "reported_unit": ["degF", "degC", None, "K", "degR", "kW", "W", "ppm", None],
        }
    )
    expected = pl.DataFrame(
        {
            "metric": ["temperature"] * 5 + ["power", "power", "co2", "co2"],
            "value": [21.0, 21.0, 21.0, 26.85, 5.0, 2500.0, 900.0, 412.0, 400.0],
            "unit": ["degC", "degC", "degC", "degC", "degR", "W", "W", "ppm", None],
        }
    )
    parts = []
    for (metric,), group in readings.group_by("metric", maintain_order=True):
        value, unit = canonical_columns(
            str(metric), pl.col("reported_value"), pl.col("reported_unit")
        )
        parts.append(group.select("metric", value.alias("value"), unit.alias("unit")))
    assert_frame_equal(pl.concat(parts), expected)


def test_a_catalog_can_be_extended_without_code():
    catalog = {**SMALL, "co2": MetricSpec("co2", "ppm", 0.0, 10_000.0, {"pct": Conversion(1e4)})}
    frame = pl.DataFrame({"reported_value": [0.04], "reported_unit": ["pct"]})
    value, unit = canonical_columns(
        "co2", pl.col("reported_value"), pl.col("reported_unit"), catalog
    )
    assert frame.select(value, unit).row(0) == pytest.approx((400.0, "ppm"))


def test_unit_conversions_table():
    expected = pl.DataFrame(
        {
            "metric": ["temperature"] * 3 + ["power"] * 3,
            "reported_unit": ["degC", "degF", None, "W", "kW", None],
            "unit": ["degC"] * 3 + ["W"] * 3,
            "scale": [1.0, 5 / 9, 1.0, 1.0, 1000.0, 1.0],
            "offset": [0.0, -32.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    assert_frame_equal(unit_conversions(SMALL), expected)


def test_metric_ranges_table():
    expected = pl.DataFrame(
        {
            "metric": ["temperature", "power"],
            "unit": ["degC", "W"],
            "minimum": [-60.0, -1e6],
            "maximum": [100.0, 1e6],
        }
    )
    assert_frame_equal(metric_ranges(SMALL), expected)
