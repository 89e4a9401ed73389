"""Intake: the device wire format and the checks every received message goes through."""
