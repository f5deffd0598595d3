"""The status server: HTTP (or HTTPS) on a thread of its own, beside the service.

Built on aiohttp: a maintained, production-grade HTTP server (unlike the development
servers of the WSGI frameworks) with TLS through :mod:`ssl` and no thread per
connection, so a slow or stuck client costs the service nothing. It runs its own event
loop on one thread (``status-server``); every query of the service (spool, forwarder,
link) runs on one more (``status-query``), with its own database connection, so the
loop always answers and never touches the link's or the forwarder's threads.

Routes: ``/`` the status page (:mod:`bridge.status.page`), ``/thumbnail/ID.png`` the
thumbnails it shows, ``POST /requeue`` its re-queue action, ``/metrics``
(:mod:`bridge.status.metrics`), ``/healthz`` (:func:`bridge.status.model.evaluate`:
200 healthy, 503 not). With credentials configured (``[status] token_file``, or
``user`` and ``password_file``) every route needs them: ``Authorization: Bearer TOKEN``
or basic auth; anything else is answered 401. A POST must come from the page itself
(its ``Origin`` is the server's) or carry :data:`~bridge.status.page.ACTION_HEADER`:
a form on another site cannot make a logged-in browser re-queue (403). Requests are not
logged (a scrape a second would fill the log).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hmac
import json
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from bridge.errors import ConfigError
from bridge.settings import StatusSettings
from bridge.status.metrics import SnapshotCollector, new_registry, render
from bridge.status.model import Limits, evaluate, listen_address
from bridge.status.page import ACTION_HEADER, placeholder_png, render_page
from bridge.status.probe import Probe

__all__ = ["ROUTES", "Credentials", "StatusServer", "status_server"]

log = logging.getLogger(__name__)

ROUTES = {
    "/": "the status page",
    "/metrics": "Prometheus metrics (text format)",
    "/healthz": "health checks as JSON: 200 healthy, 503 unhealthy",
}
_START_TIMEOUT_S = 10.0
_T = TypeVar("_T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Credentials:
    """What a request must carry: a bearer ``token`` and/or basic ``user``/``password``;
    neither: nothing (loopback without credentials)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @property
    def required(self) -> bool:
        return self.token is not None or self.user is not None

    @classmethod
    def of(cls, settings: StatusSettings) -> Credentials:
        """Read the files the settings name; an unreadable or empty one is a usage error."""
        token = _secret(settings.token_file, "token_file")
        password = _secret(settings.password_file, "password_file")
        user = settings.user if password is not None else None
        return cls(token, user, password)

    def allows(self, authorization: str) -> bool:
        """Whether the ``Authorization`` header value satisfies these credentials."""
        if not self.required:
            return True
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token is not None:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme.lower() == "basic" and self.user is not None and self.password is not None:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return bool(sep) and (
                hmac.compare_digest(user.encode(), self.user.encode())
                & hmac.compare_digest(password.encode(), self.password.encode())
            )
        return False

    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        return 'Basic realm="acrnema-bridge"' if self.user is not None else "Bearer"


def _secret(path: Path | None, key: str) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"[status] {key} {path}: cannot read: {why}") from exc
    if not text:
        raise ConfigError(f"[status] {key} {path}: empty")
    return text


def tls_context(settings: StatusSettings) -> ssl.SSLContext | None:
    """The server's TLS context of ``cert_file`` and ``key_file``; None: plain HTTP."""
    if settings.cert_file is None or settings.key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"[status] cert_file {settings.cert_file} / key_file {settings.key_file}: "
            f"unusable: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    return context


class StatusServer:
    """``/``, ``/metrics`` and ``/healthz`` of one service on ``settings.listen``.

    :meth:`start` binds (a usage error, :class:`ConfigError`, if it cannot: address in
    use, unusable TLS files or credentials) and returns once the server answers;
    :meth:`stop` ends both threads. ``registry`` holds the service's metrics; the probe
    reads the rest at each request."""

    def __init__(
        self,
        settings: StatusSettings,
        probe: Probe,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.probe = probe
        self.registry = registry
        self.limits = Limits(settings.max_wait, settings.max_link_down)
        self.credentials = Credentials.of(settings)
        self.tls = tls_context(settings)
        self.host, self.port = listen_address(settings.listen)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._queries: concurrent.futures.ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The server's base URL (with the port it bound, for a ``listen`` port 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._queries = concurrent.futures.ThreadPoolExecutor(1, "status-query")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(loop, started), name="status-server", daemon=True
        )
        self._thread.start()
        try:
            started.result(_START_TIMEOUT_S)
        except TimeoutError as exc:  # an OSError too: before the bind errors
            self.stop()
            raise ConfigError(
                f"status server: not listening on {self.settings.listen} "
                f"after {_START_TIMEOUT_S:g} s"
            ) from exc
        except OSError as exc:
            self._end_threads()
            raise ConfigError(
                f"status server: cannot listen on {self.settings.listen}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            self.stop()
            raise
        log.info("status server on %s (/, /metrics, /healthz)", self.url)

    def stop(self) -> None:
        """Stop serving and end the server's threads (open requests are dropped)."""
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        self._end_threads()

    def _end_threads(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        queries, self._queries = self._queries, None
        if queries is not None:
            queries.submit(self.probe.close)  # the query thread's database connection
            queries.shutdown(wait=True)

    def _serve(
        self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(None)
            loop.run_forever()
        finally:
            runner = self._runner
            if runner is not None:
                loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._auth], client_max_size=64 << 10)
        app.router.add_get("/", self._page)
        app.router.add_get(r"/thumbnail/{object_id:\d{1,18}}.png", self._thumbnail)
        app.router.add_post("/requeue", self._requeue)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        server = site._server  # the bound socket, for a port 0
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    @web.middleware
    async def _auth(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not self.credentials.allows(request.headers.get("Authorization", "")):
            return web.Response(
                status=401,
                text="credentials required\n",
                headers={"WWW-Authenticate": self.credentials.challenge()},
            )
        return await handler(request)

    async def _query(self, work: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._queries, work)

    async def _page(self, request: web.Request) -> web.Response:
        notice = ""
        requeued = request.query.get("requeued", "")
        if requeued.isdigit():  # only a number comes from the query: no text to forge
            done = request.query.get("done") == "1"
            notice = f"object {int(requeued)} " + (
                "re-queued" if done else "not re-queued: not quarantined, or its file purged"
            )
        body = await self._query(lambda: render_page(self.probe.page(notice)).encode())
        return web.Response(
            body=body,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )

    async def _thumbnail(self, request: web.Request) -> web.Response:
        object_id = int(request.match_info["object_id"])
        png = await self._query(lambda: self.probe.thumbnails.get(object_id))
        if png is None:
            return web.Response(status=404, text="no such thumbnail on the page\n")
        png = png or placeholder_png()  # file gone, or no pixels that render
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    async def _requeue(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            return web.Response(
                status=403,
                text=f"cross-site request refused: post from the page or with {ACTION_HEADER}\n",
            )
        form = await request.post()
        destination = str(form.get("destination", ""))
        try:
            object_id = int(str(form.get("object_id", "")))
        except ValueError:
            return web.Response(status=400, text="give object_id and destination\n")
        done = await self._query(lambda: self.probe.requeue(object_id, destination))
        raise web.HTTPSeeOther(f"/?{urlencode({'requeued': object_id, 'done': int(done)})}")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self._query(lambda: render(self.registry))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        def check() -> tuple[int, bytes]:
            health = evaluate(self.probe.snapshot(check_spool=True), self.limits)
            return (200 if health.healthy else 503), json.dumps(health.as_dict()).encode()

        status, body = await self._query(check)
        return web.Response(status=status, body=body, content_type="application/json")


def _same_origin(request: web.Request) -> bool:
    """Whether a POST comes from this server's own page (or a script that says so)."""
    if request.headers.get(ACTION_HEADER):
        return True  # a header no cross-site form can set (and a preflight would ask)
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is not None and origin == f"{request.scheme}://{request.host}"


def status_server(
    settings: StatusSettings,
    probe: Probe,
    registry: CollectorRegistry | None = None,
) -> StatusServer:
    """The status server of a service: ``registry`` (a new one if None) gets the metrics
    read at scrape time from ``probe``, beside any the service counts itself."""
    registry = new_registry() if registry is None else registry
    registry.register(SnapshotCollector(probe.snapshot, probe.outcomes))
    return StatusServer(settings, probe, registry)
