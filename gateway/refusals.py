"""Why the gateway will not do what it was asked: a small typed family, so that a refusal
is never confused with a bug. Every channel (MQTT, HTTP, the command line) maps these to
its own answer; anything else raised while serving a request is a bug, logged with its
traceback and answered as a failure."""

from __future__ import annotations


class Refused(Exception):
    """A request the gateway will not run; the message is what the requester is told."""

    why = "refused"


class Forbidden(Refused):
    """Unknown command, or the requester's role may not run it."""

    why = "forbidden"


class NotFound(Refused):
    """No such device or ticket."""

    why = "not_found"


class Conflict(Refused):
    """The ticket's state does not allow this move now."""

    why = "conflict"


class Invalid(Refused):
    """The request is malformed, or asks for something this device cannot do."""

    why = "invalid"


class Unavailable(Refused):
    """The gateway could not do it just now (its store is busy); the same request may work
    in a moment."""

    why = "unavailable"
