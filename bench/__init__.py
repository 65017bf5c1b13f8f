"""Benchmarks: scripts that print figures and how they were made (see docs/benchmarks.md)."""
