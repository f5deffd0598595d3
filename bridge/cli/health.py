"""The ``status`` command of ``acrnema-bridge``: a running service's health, for a
terminal or cron.

Part of the command line (:mod:`bridge.cli`). It asks the status server's ``/healthz``
(docs/operations.md, "Status server, metrics and health") at ``--url`` or at the
``[status] listen`` address of the settings, with the settings' credentials, and prints
each check. Exit status: 0 healthy, 1 unhealthy or no answer (one line), 2 usage.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from bridge.cli.common import seconds
from bridge.cli.logs import document, output, say
from bridge.errors import ConfigError
from bridge.settings import Settings, StatusSettings

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` to the subparsers ``sub``."""
    status = sub.add_parser(
        "status",
        help="ask a running service's health (/healthz): exit 0 healthy, 1 unhealthy",
        description=(
            "Ask the status server of a running 'run' or 'forward' for its health checks "
            "(workers, spool, queue, link) and print them. The server is --url (a base URL "
            "such as http://127.0.0.1:8104, or the full /healthz URL) or, by default, the "
            "[status] listen address of the config; the config's [status] token_file, or "
            "user and password_file, are sent as credentials, and an https server is "
            "checked against the system's CAs and [status] cert_file. Exit status: 0 "
            "healthy, 1 unhealthy or not reachable (one line), 2 usage error."
        ),
    )
    status.add_argument("--url", metavar="URL", help="the status server (default: [status] listen)")
    status.add_argument("--json", action="store_true", help="print the server's JSON as it is")
    status.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="S", help="seconds to wait (default 10)"
    )
    status.set_defaults(handler=_status, reads_settings=True)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    url = _healthz_url(args.url, settings.status)
    request = urllib.request.Request(url, headers=_credentials(settings.status))
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()  # the system's CAs ...
        if settings.status.cert_file is not None:  # ... and the server's own certificate
            context.load_verify_locations(cafile=settings.status.cert_file)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=context) as answer:
            code, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        say(f"acrnema-bridge status: {url}: no answer: {reason}", level=logging.ERROR)
        return 1
    try:
        health = json.loads(body) if code in (200, 503) else None
    except ValueError:
        health = None
    if not isinstance(health, dict) or not isinstance(health.get("checks"), dict):
        say(
            f"acrnema-bridge status: {url}: answered HTTP {code}, not a health report",
            level=logging.ERROR,
        )
        return 1
    if args.json:
        document(health)
    else:
        _print(url, health)
    return 0 if code == 200 and health.get("status") == "healthy" else 1


def _healthz_url(given: str | None, settings: StatusSettings) -> str:
    """``--url`` (``/healthz`` added to a bare base URL), or the URL of ``listen``."""
    if given is None:
        if not settings.listen:
            raise ConfigError("status: no status server: give --url URL or [status] listen")
        scheme = "https" if settings.cert_file is not None else "http"
        given = f"{scheme}://{settings.listen}"
    parts = urllib.parse.urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"status: --url {given!r}: give http://HOST:PORT or https://HOST:PORT")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/healthz")
    return urllib.parse.urlunsplit(parts)


def _credentials(settings: StatusSettings) -> dict[str, str]:
    """The ``Authorization`` header of the settings' credentials, if any."""
    from bridge.status.server import Credentials

    credentials = Credentials.of(settings)
    if credentials.token is not None:
        return {"Authorization": f"Bearer {credentials.token}"}
    if credentials.user is not None and credentials.password is not None:
        pair = f"{credentials.user}:{credentials.password}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    return {}


def _print(url: str, health: dict[str, Any]) -> None:
    output(f"{health.get('status', '?')}: {url}", status=health.get("status"), url=url)
    for name, check in health["checks"].items():
        if isinstance(check, dict):
            state, detail = check.get("state", "?"), check.get("detail", "")
            output(f"  {name:8} {state:8} {detail}", check=name, state=state, detail=detail)
