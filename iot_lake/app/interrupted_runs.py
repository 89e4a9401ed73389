"""Runs an earlier `dagster dev` left in progress, failed at the next start so they run again.

A run worker that dies alone (killed, or taken by the OOM killer) is failed within seconds
by the code server that started it ("Run execution process for ... was terminated by
signal 9"), and the daemon's run retries run it again. When the code server dies with it
(the machine loses power, the whole process group gets SIGKILL), nothing records the
run's end, so it stays STARTED in the instance for good. Two things follow. The instance
runs one run at a time (iot_lake/app/dagster_ui.py), so that run holds the only slot and every
run the sensors request after it waits in the queue forever: nothing reaches silver or
gold again. And the hours it was to rebuild stay stale, as raw_landing_sensor's cursor is
already past their commits.

Before `iot-lake run` starts `dagster dev` on its instance, no worker of that instance is
alive: DagsterDev refuses to start while a group it started earlier still runs. So the
runs left STARTING or STARTED are reported failed, and the daemon's run retries
(`run_retries` in the instance config) run them again from the step that did not finish;
a run left CANCELING is reported canceled, as its user asked.

Run as `python -m iot_lake.app.interrupted_runs DAGSTER_HOME`, in a process of its own, so the
`iot-lake` command itself never imports Dagster. It prints the id of each run it ended.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

IN_PROGRESS = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
GONE = (
    "Its run worker was gone when `iot-lake run` started dagster dev again (the machine or "
    "the earlier dagster dev was stopped without a clean shutdown)"
)


def end_runs_left_in_progress(home: Path) -> list[dg.DagsterRun]:
    """Report every run of the instance in `home` still in progress as failed (or canceled).

    Only for an instance no `dagster dev` serves now: a live worker's run would be run twice.
    """
    with dg.DagsterInstance.from_config(str(home)) as instance:
        left = list(instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)))
        for run in left:
            if run.status == dg.DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, f"{GONE}: marked canceled.")
            else:
                instance.report_run_failed(run, f"{GONE}: marked failed, to be retried.")
        return left


def main(argv: list[str]) -> int:
    """`python -m iot_lake.app.interrupted_runs DAGSTER_HOME`: end the runs left in progress."""
    if len(argv) != 1:
        print("usage: python -m iot_lake.app.interrupted_runs DAGSTER_HOME", file=sys.stderr)
        return 2
    for run in end_runs_left_in_progress(Path(argv[0])):
        print(f"{run.run_id} {run.job_name} {run.tags.get('dagster/partition', '')}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
