"""The login of an Envisalink (EVL-3/4) TPI session, sans-IO.

An Envisalink puts a DSC PowerSeries panel on the network: a TCP server (port 4025) that
speaks the IT-100 command set (drivers/it100.py: a 3-digit command, its data, a 2-digit
upper-case hex checksum of the two, CR LF) once a client has logged in. The login is one
exchange, command 505 "login interaction" with a 1-digit code as data:

  module -> client   505 3   password request, sent as soon as the connection is made
  client -> module   005 PW  network login: the module's password as data
  module -> client   505 1   password correct: the session is open
                     505 0   password incorrect: the module closes the connection
                     505 2   no password within 10 s: the module closes the connection

The password is the one of the module's local web page; the TPI takes 1 to 10 printable
ASCII characters (older firmware only the first 6).
"""

from __future__ import annotations

import hmac
from enum import Enum

from .it100 import Message

PORT = 4025
LOGIN = "005"
LOGIN_INTERACTION = "505"
# How long the module waits for the password after asking for it.
PASSWORD_WAIT_S = 10.0
MAX_PASSWORD = 10


class Login(Enum):
    """The data of a 505 login interaction."""

    REFUSED = "0"  # wrong password
    OPEN = "1"  # the session is open
    TIMED_OUT = "2"  # no password came in time
    REQUEST = "3"  # the module asks for the password


def login_step(msg: Message) -> Login | None:
    """What a 505 message says; None for any other message, or a 505 with unknown data."""
    if msg.command != LOGIN_INTERACTION:
        return None
    try:
        return Login(msg.data)
    except ValueError:
        return None


def interaction(step: Login) -> Message:
    """The module's 505 message for `step`."""
    return Message(LOGIN_INTERACTION, step.value)


def check_password(password: str) -> str:
    """The password, if the TPI can carry it; ValueError saying why not."""
    if not password:
        raise ValueError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"a password of {len(password)} characters (the module takes at most {MAX_PASSWORD})")
    bad = next((c for c in password if not "!" <= c <= "~"), None)
    if bad is not None:
        raise ValueError(f"the password holds U+{ord(bad):04X}; the module takes printable ASCII without spaces")
    return password


def login_command(password: str) -> Message:
    """The client's 005 network login; ValueError for a password the TPI cannot carry."""
    return Message(LOGIN, check_password(password))


def password_matches(msg: Message, password: str) -> bool:
    """Whether a client's message is the login with this password (compared in constant time)."""
    return msg.command == LOGIN and hmac.compare_digest(msg.data.encode(), password.encode())
