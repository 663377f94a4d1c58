"""Shared test configuration."""

# Scripts that tests/test_stacks.py launches in their own processes; not test modules.
collect_ignore = ["stacks"]
