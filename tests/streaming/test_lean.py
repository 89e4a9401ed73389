"""The consumer process runs, bad input and compaction included, with pandas kept out."""

import subprocess
import sys
import textwrap

from iot_lake.lake.catalog import RAW_TELEMETRY
from streaming.simulator.fleet import Fleet
from tests.conftest import framed_file

# Runs the CLI's own `consume` in a fresh interpreter and reports, at exit, whether pandas
# was ever imported: the test process itself has pandas loaded (Dagster, the fixtures).
CONSUME_AND_REPORT = textwrap.dedent(
    """
    import atexit, sys
    atexit.register(lambda: print("pandas imported:", "pandas" in sys.modules))
    from iot_lake.app.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_cli_consumer_lands_everything_without_importing_pandas(lake, tmp_path, noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(2000))
    path = framed_file(tmp_path / "fleet.jsonl", messages)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CONSUME_AND_REPORT,
            "consume",
            "--source",
            f"file:{path}",
            "--lake-root",
            lake.root,
            "--max-records",
            "150",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pandas imported: False" in done.stdout
    raw = lake.read(RAW_TELEMETRY)
    assert raw.height == len(messages)
    refused = sum(1 for m in messages if m.expected_error)
    assert refused > 0
    assert raw["error_code"].is_not_null().sum() == refused


def test_a_refused_import_names_where_pandas_is_kept_out():
    code = textwrap.dedent(
        """
        from streaming.lean import keep_pandas_out
        assert keep_pandas_out()
        try:
            import pandas
        except ModuleNotFoundError as refused:
            print(refused)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pandas is kept out of the consumer process (streaming/lean.py)" in done.stdout
