"""A run cut short by `iot-lake run`'s Ctrl-C is run again once the command starts again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import pytest

from tests.ui.commands import ctrl_c
from tests.ui.restarts import FAILURE_REASON, retried_after_restart, runs_of, stopped_mid_run


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_cut_short_by_ctrl_c_is_run_again_after_the_restart(tmp_path, process_groups):
    def stop(process: subprocess.Popen[bytes]) -> None:
        code, _ = ctrl_c(process)
        assert code == 0

    def cut_short(home: Path) -> list[dg.DagsterRun]:
        failed = runs_of(home, dg.DagsterRunStatus.FAILURE)
        return [r for r in failed if r.tags.get(FAILURE_REASON) == "UNEXPECTED_TERMINATION"]

    first = stopped_mid_run(tmp_path, process_groups, stop, cut_short)
    retried_after_restart(tmp_path, process_groups, first)
