"""Where the consumer reads messages from: files, MQTT, Kinesis, or the in-process simulator."""
