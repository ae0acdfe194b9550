"""Fault-injection suite: real Redis, real service processes, injected crashes, pauses,
Redis restarts, hostile input and network faults, checked against a pure reference model.

`python -m tests.faults` (or `make faults`) runs every scenario at full size;
`pytest tests/faults` runs the short versions.
"""
