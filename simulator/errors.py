"""The simulator's one error type, apart from the servers so that a command can name it
without importing them."""

from __future__ import annotations


class SimulatorError(Exception):
    """The simulator cannot do what its site file asks (e.g. a port is taken)."""
