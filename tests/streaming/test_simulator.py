from collections import Counter

import orjson

from iot_lake.lake.catalog import RAW_TELEMETRY
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.fleet import Fleet, FleetSpec
from streaming.sources.simulated import SimulatorSource


def test_same_seed_same_messages_other_seed_other_messages():
    first = [m.payload for m in Fleet(FleetSpec(devices=20, seed=1)).messages(500)]
    again = [m.payload for m in Fleet(FleetSpec(devices=20, seed=1)).messages(500)]
    other = [m.payload for m in Fleet(FleetSpec(devices=20, seed=2)).messages(500)]
    assert first == again
    assert first != other


def test_fleet_has_types_tenants_and_firmware():
    fleet = Fleet(FleetSpec(devices=30, tenants=3))
    assert {d.device_type.name for d in fleet.devices} == {
        "env_sensor",
        "vehicle_tracker",
        "power_meter",
    }
    assert len({d.tenant_id for d in fleet.devices}) == 3
    assert all(d.firmware in d.device_type.firmware for d in fleet.devices)


def test_offline_device_flushes_buffered_readings_late_with_old_timestamps(noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(20_000))
    late = [m for m in messages if m.fault == "late"]
    assert late
    for message in late[:50]:
        ts = orjson.loads(message.payload)["ts"]
        device = next(d for d in Fleet(noisy_fleet).devices if d.device_id == message.device_id)
        assert ts - device.clock_skew_ms < message.sim_ms  # measured before it was sent
    offline = [m for m in messages if m.fault == "offline"]
    assert all(orjson.loads(m.payload)["status"] == "offline" for m in offline)


def test_bad_firmware_crashes_more():
    spec = FleetSpec(devices=90, seed=4, bad_firmware=frozenset({"1.5.0"}))
    fleet = Fleet(spec)
    firmware = {d.device_id: d.firmware for d in fleet.devices}
    crashes = Counter()
    for message in fleet.messages(60_000):
        if message.kind == "events" and b'"crash"' in message.payload:
            crashes[firmware[message.device_id] == "1.5.0"] += 1
    bad_devices = sum(fw == "1.5.0" for fw in firmware.values())
    good_devices = len(firmware) - bad_devices
    assert crashes[True] / bad_devices > 10 * crashes[False] / max(good_devices, 1)


def test_every_fault_kind_occurs_with_its_expected_error(noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(20_000))
    faults = Counter(m.fault for m in messages)
    assert {"duplicate", "late", "malformed", "offline", "spoof"} <= set(faults)
    errors = Counter(m.expected_error for m in messages if m.fault == "malformed")
    assert set(errors) == {"undecodable", "wrong_type", "missing_field", "oversized"}


def test_in_process_source_lands_exactly_once_across_a_restart(lake):
    spec = FleetSpec(devices=10, seed=9)
    options = ConsumerOptions(stats_interval_s=3600)
    for limit in (700, 1500):
        source = SimulatorSource(spec, max_messages=limit)
        Consumer(source, LandingWriter(lake, "sim"), options, report=lambda _: None).run()
    raw = lake.read(RAW_TELEMETRY)
    expected = [m.payload.decode() for m in Fleet(spec).messages(1500)]
    assert Counter(raw["payload"].to_list()) == Counter(expected)


def test_catch_up_runs_fast_until_the_present_then_never_ahead_of_the_wall_clock(lake):
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    import polars as pl

    start = datetime.now(UTC) - timedelta(seconds=60)
    spec = replace(FleetSpec(devices=3, seed=2).without_faults(), start=start)
    source = SimulatorSource(spec, speed=1_000_000, catch_up=True)
    options = ConsumerOptions(stats_interval_s=3600, stop_when_idle_s=1.5)
    Consumer(source, LandingWriter(lake, "sim"), options, report=lambda _: None).run()
    finished = datetime.now(UTC)
    device_ts = (
        lake.read(RAW_TELEMETRY)
        .select(pl.col("payload").str.json_path_match("$.ts").cast(pl.Int64))
        .to_series()
    )
    assert device_ts.max() <= finished.timestamp() * 1000  # never in the future
    assert device_ts.max() >= (start + timedelta(seconds=50)).timestamp() * 1000  # caught up
