"""Settings, one home: one typed tree and one loader (STYLE.md rule 10).

The tree (:mod:`bridge.settings.tree`) is frozen dataclasses, one per TOML table::

    [link]        port, profile, ae_title                  (acrnema-bridge run)
    [spool]       path, retention_days
    [forward]     calling_ae, max_pdu, timeouts, backoff, max_attempts, max_lost,
                  give_up_after, tcp_tuning, commitment_host/port/timeout,
                  commitment_callback_host/port
    [[destination]]  ae_title, host, port, modalities, commitment, commitment_callers,
                  tls = { ca_file, cert_file, key_file, check_hostname }
    [logging]     level, format
    [status]      listen, max_wait, max_link_down, token_file, user, password_file,
                  cert_file, key_file, insecure           (run, forward)

The loader (:func:`load`) applies one precedence, defaults < TOML file < ``BRIDGE_*``
environment < command-line flags, records where each value came from
(:meth:`Settings.origin`), and refuses unknown keys, naming the nearest known one. Every
key with its default and meaning: docs/forwarding.md, "Configuration".

Pure: no sockets, threads or subprocesses; the only I/O is reading the file it is given.
The objects the forwarder runs with (``Destination``, ``TlsSettings``, ``RetryPolicy``)
are made from this tree in one place, :mod:`bridge.cli.common`.
"""

from __future__ import annotations

from bridge.settings.loader import LEGACY_ENV, Flags, SettingsError, check_file, load
from bridge.settings.tree import (
    DestinationSettings,
    ForwardSettings,
    LinkSettings,
    LoggingSettings,
    Settings,
    SpoolSettings,
    StatusSettings,
    TlsFiles,
    keys,
)

__all__ = [
    "LEGACY_ENV",
    "DestinationSettings",
    "Flags",
    "ForwardSettings",
    "LinkSettings",
    "LoggingSettings",
    "Settings",
    "SettingsError",
    "SpoolSettings",
    "StatusSettings",
    "TlsFiles",
    "check_file",
    "keys",
    "load",
]
