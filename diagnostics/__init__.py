"""Diagnostics: fault rules, debouncing, root cause, tickets and their service clocks."""
