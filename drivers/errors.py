"""Errors raised by drivers. Whether to retry is part of the type, not a guess by callers."""

from __future__ import annotations


class DriverError(Exception):
    """Base of every driver error; `retryable` says if the link owner may try again."""

    retryable = False


class LinkDown(DriverError):
    """The link to a device or host is not usable now (refused, reset, timed out)."""

    retryable = True


class DeviceRefused(DriverError):
    """The peer answered, but with a protocol exception (bad address, busy, failed)."""


class ProfileMismatch(DriverError):
    """The data read does not fit the profile (too few registers)."""
