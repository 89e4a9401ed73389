"""Process entry points: the `iot-lake` command, the Dagster UI runner, SQL over every stage."""
