"""Files that hold secrets should be readable by the gateway's user alone. The gateway says so
once, at start, for each one that others can read: engineers' legacy HMAC secrets, the API
tokens, the InfluxDB token, broker and Envisalink password files, and the site file itself
when a broker password is written in it. It only warns: an operator may have reasons, and a
box that refuses to start over a file mode is a box that reports nothing."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from .config import BrokerConfig
from .site_file import LoadedSite, resolve


def secret_files(site: LoadedSite) -> Iterator[tuple[str, Path]]:
    """(what it is, path) of every file of the site that holds a secret."""
    cfg, base = site.config, site.path.parent
    if cfg.remote is not None and site.users is not None and site.users.legacy():
        # Public keys are no secret; a legacy HMAC secret in the file is.
        yield "remote.users_file", resolve(base, cfg.remote.users_file)
    if cfg.http is not None:
        yield "http.tokens_file", resolve(base, cfg.http.tokens_file)
    if cfg.influxdb is not None and cfg.influxdb.token_file is not None:
        yield "influxdb.token_file", resolve(base, cfg.influxdb.token_file)
    for hi, host in enumerate(cfg.hosts):
        if host.envisalink is not None:
            yield f"hosts[{hi}].envisalink.password_file", resolve(base, host.envisalink.password_file)
        if host.sia is not None and host.sia.key_file is not None:
            yield f"hosts[{hi}].sia.key_file", resolve(base, host.sia.key_file)
    brokers: list[tuple[str, BrokerConfig]] = []
    if cfg.uplink is not None:
        brokers.append(("uplink.broker", cfg.uplink.broker))
    if cfg.device_broker is not None:
        brokers.append(("device_broker", cfg.device_broker))
    for key, broker in brokers:
        if broker.password_file is not None:
            yield f"{key}.password_file", resolve(base, broker.password_file)
        if broker.password:
            yield f"the site file ({key}.password is written in it)", site.path
        if broker.tls is not None and broker.tls.key_file is not None:
            yield f"{key}.tls.key_file", resolve(base, broker.tls.key_file)
        elif broker.tls is not None and broker.tls.cert_file is not None:  # the key may be in it
            yield f"{key}.tls.cert_file", resolve(base, broker.tls.cert_file)


def exposed(path: Path) -> str | None:
    """How others can read the file, or None when only its owner (and root) can."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # a file that is not there is the loader's business
    if mode & stat.S_IROTH:
        return "anyone on the box can read it"
    if mode & stat.S_IRGRP:
        return "its group can read it"
    return None


def warnings(site: LoadedSite) -> list[str]:
    """One line per secret file that others can read, saying which and what to do."""
    out = []
    seen: set[Path] = set()
    for what, path in secret_files(site):
        if path in seen:
            continue
        seen.add(path)
        how = exposed(path)
        if how is not None:
            out.append(f"{what}: {path} holds a secret and {how}; chmod 600 it (docs/security.md)")
    return out
