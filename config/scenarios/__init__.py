"""Simulator fault scenarios."""
