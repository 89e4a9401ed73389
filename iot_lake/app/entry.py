"""The `iot-lake` console script: process set-up first, then the command.

The allocator setting must be in the environment before polars is imported, and the CLI
imports polars (through the lake), so this module imports nothing heavy: it sets the
variable, then imports the CLI and runs it. `python -m iot_lake.app.entry ARGS` is the same
as `iot-lake ARGS`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from iot_lake.app.allocator import keep_freed_pages


def main(argv: Sequence[str] | None = None) -> int:
    """Run `iot-lake`: polars keeps freed pages in this process and its children, then the CLI."""
    keep_freed_pages()
    from iot_lake.app import cli  # after the allocator setting, on purpose

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
