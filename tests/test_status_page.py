"""The status page ``/`` (issue 12, items 1 and 6): what it shows, its escaping, its
re-queue action (credentials, cross-site POSTs), its bounded thumbnail cache, and the
page in a real browser (Debian's headless Chromium) while an emulated scanner sends
images to a real ``acrnema-bridge run`` forwarding to a real storescp.
"""

from __future__ import annotations

import base64
import html.parser
import io
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import peers
import pytest
from PIL import Image
from test_forward import PRIVATE_SOP_CLASS, private_object
from test_status_run import run_with_status
from test_status_server import fetch, serving, wait_for

from bridge.cli import main
from bridge.ingest import ingest_file
from bridge.spool.store import Spool
from bridge.status.page import ACTION_HEADER, Thumbnails
from bridge.status.probe import Probe
from bridge.testing.phantom import phantom_images

HOSTILE_NAME = '<img src=x onerror="alert(1)">@127.0.0.1:104'
HOSTILE_REASON = "</td><script>alert('pwned')</script> & \"quoted\""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post(
    url: str, fields: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST a form; a redirect is returned as it came (code and Location), not followed."""
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(fields).encode(), headers=headers or {}, method="POST"
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def quarantine_one(spool: Spool, folder: Path, destination: str, reason: str) -> int:
    """Spool a Secondary Capture for ``destination`` and quarantine it with ``reason``."""
    spool.register([destination])
    path = folder / "sc.dcm"
    peers.write_secondary_capture(path)
    ingest_file(spool, path)
    [job] = spool.claim(destination, now=time.time())
    spool.fail(job, reason)
    return job.object_id


def test_hostile_names_and_reasons_are_escaped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    try:
        object_id = quarantine_one(spool, tmp_path, HOSTILE_NAME, HOSTILE_REASON)
        with serving(Probe(spool)) as server:
            code, body = fetch(server.url + "/")
    finally:
        spool.close()
    assert code == 200
    page = body.decode()
    for raw in (HOSTILE_NAME, HOSTILE_REASON, "<script>", 'onerror="alert'):
        assert raw not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;@127.0.0.1:104" in page
    # the re-queue form carries the name escaped in its attribute, and the DOM gives it back
    forms = _Dom.of(page).forms
    assert forms == [{"object_id": str(object_id), "destination": HOSTILE_NAME}]


def test_requeue_needs_the_credentials_and_the_page_s_origin(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    destination = "PACS@127.0.0.1:104"
    spool = Spool(tmp_path / "spool")
    try:
        object_id = quarantine_one(spool, tmp_path, destination, "0xA700: out of resources")
        fields = {"object_id": str(object_id), "destination": destination}
        auth = {"Authorization": "Bearer s3cret"}
        with serving(Probe(spool), token_file=token) as server:
            origin = {"Origin": server.url}
            page = fetch(server.url + "/", auth)[1].decode()
            assert 'action="/requeue"' in page and "0xA700: out of resources" in page
            assert post(server.url + "/requeue", fields, origin)[0] == 401
            assert post(server.url + "/requeue", fields, {**origin, **_bearer("no")})[0] == 401
            # a logged-in browser posting from another site's form, or without Origin
            evil = {**auth, "Origin": "http://evil.example"}
            assert post(server.url + "/requeue", fields, evil)[0] == 403
            cross = {**auth, **origin, "Sec-Fetch-Site": "cross-site"}
            assert post(server.url + "/requeue", fields, cross)[0] == 403
            assert post(server.url + "/requeue", fields, auth)[0] == 403
            assert spool.counts(destination)["failed"] == 1  # nothing changed so far
            code, headers, _ = post(server.url + "/requeue", fields, {**auth, **origin})
            assert code == 303
            assert headers["Location"] == f"/?requeued={object_id}&done=1"
            assert spool.counts(destination) == {
                "ready": 1, "in_flight": 0, "done": 0, "failed": 0,
            }  # fmt: skip
            page = fetch(server.url + headers["Location"], auth)[1].decode()
            assert f"object {object_id} re-queued" in page
            assert "Nothing quarantined." in page
            # a second time: nothing quarantined any more; a script says so by the header
            code, headers, _ = post(
                server.url + "/requeue", fields, {**auth, ACTION_HEADER: "requeue"}
            )
            assert (code, headers["Location"]) == (303, f"/?requeued={object_id}&done=0")
            bad = {"object_id": "x", "destination": destination}
            assert post(server.url + "/requeue", bad, {**auth, **origin})[0] == 400
    finally:
        spool.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_basic_auth_guards_the_page_thumbnails_and_action(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("pw\n")
    spool = Spool(tmp_path / "spool")
    try:
        with serving(Probe(spool), user="ops", password_file=password) as server:
            for route in ("/", "/thumbnail/1.png"):
                assert fetch(server.url + route)[0] == 401
            ok = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
            assert fetch(server.url + "/", ok)[0] == 200
            assert fetch(server.url + "/thumbnail/1.png", ok)[0] == 404  # never offered
    finally:
        spool.close()


def test_the_thumbnail_cache_is_bounded_and_serves_only_what_the_page_offered(
    tmp_path: Path,
) -> None:
    rendered: list[Path] = []

    def render(path: Path) -> bytes | None:
        rendered.append(path)
        return None if path.name == "5.dcm" else path.name.encode()

    cache = Thumbnails(render, size=2, offers=3)
    assert cache.get(1) is None  # not offered: never read
    for n in range(1, 5):
        cache.offer(n, tmp_path / f"{n}.dcm")
    assert cache.get(1) is None  # pushed out of the offers by the fourth
    assert [cache.get(n) for n in (2, 3, 2)] == [b"2.dcm", b"3.dcm", b"2.dcm"]
    assert len(rendered) == 2  # the second 2 came from the cache
    assert cache.get(4) == b"4.dcm"
    assert len(cache) == 2  # 3 dropped (least recently used), 2 and 4 kept
    cache.get(3)
    assert len(rendered) == 4
    cache.offer(5, tmp_path / "5.dcm")  # no picture: empty, remembered
    assert cache.get(5) == b"" and cache.get(5) == b""
    assert len(rendered) == 5


class _Dom(html.parser.HTMLParser):
    """The parts of a page the tests look at: images, forms, and cells by class."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.forms: list[dict[str, str]] = []
        self.cells: dict[str, list[str]] = {}
        self._cell: str | None = None
        self.text: list[str] = []

    @classmethod
    def of(cls, page: str) -> _Dom:
        dom = cls()
        dom.feed(page)
        return dom

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        elif tag == "form":
            self.forms.append({})
        elif tag == "input" and self.forms:
            self.forms[-1][a["name"]] = a["value"]
        elif tag == "td" and "class" in a:
            self._cell = a["class"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self.cells.setdefault(self._cell, []).append(data)


def _reasons(page: str) -> list[list[str]]:
    """The texts of the ``reason`` cells, one list per cell, in page order."""
    found: list[list[str]] = []

    class Cells(html.parser.HTMLParser):
        inside = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "td" and ("class", "reason") in attrs:
                self.inside = True
                found.append([])

        def handle_endtag(self, tag: str) -> None:
            if tag == "td":
                self.inside = False

        def handle_data(self, data: str) -> None:
            if self.inside:
                found[-1].append(data)

    Cells().feed(page)
    return found


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Debian's Chromium, headless, with a profile of its own (removed by the test)."""
    browser = peers.require_tool("chromium")
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions",
         "--virtual-time-budget=3000", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_page_in_headless_chromium_while_a_scanner_sends(
    tmp_path: Path, storescp: peers.StoreSCPPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_SPOOL_RETENTION_DAYS", "1")  # keep the files: thumbnails
    dest = f"{storescp.ae_title}@127.0.0.1:{storescp.port}"
    count = 4
    shot = tmp_path / "status-page.png"
    poison = tmp_path / "poison.dcm"  # a SOP class storescp refuses: quarantined
    private_object(poison)
    assert main(["spool", "add", "--spool", str(tmp_path / "spool"), str(poison)]) == 0
    with run_with_status(tmp_path, "--dest", dest) as (port, url):
        wait_for(lambda: 'class="quarantined"' in fetch(url + "/")[1].decode(), "quarantine")
        with peers.scanner_on(port, response_timeout=30.0) as scanner:
            results = scanner.send(phantom_images(count, rows=128))
            assert all(r.ok for r in results)
            wait_for(lambda: len(storescp.received()) == count, f"{count} objects at the PACS")
            done = chromium("--dump-dom", url + "/", profile=tmp_path / "profile")
            assert done.returncode == 0, done.stderr
            shown = chromium(
                f"--screenshot={shot}", "--window-size=1100,1200", url + "/",
                profile=tmp_path / "profile",
            )  # fmt: skip
            assert shown.returncode == 0, shown.stderr
        dom = _Dom.of(done.stdout)
        # the link, the destination and its counts as the browser built them
        assert 'id="link-state">up<' in done.stdout
        assert dest in "".join(dom.text)
        assert dom.cells["ready"] == ["0"] and dom.cells["failed"] == ["1"]
        assert dom.cells["in-flight"] == ["0"]
        [error, quarantined] = ["".join(texts) for texts in _reasons(done.stdout)]
        assert PRIVATE_SOP_CLASS in error or "SOP Class" in error, error
        assert quarantined and quarantined in error  # the same reason, in the quarantine
        [form] = dom.forms
        assert form["destination"] == dest
        thumbnails = [i for i in dom.images if i.get("class") == "thumbnail"]
        assert len(thumbnails) == count + 1  # the phantom slices and the poison object
        pictures = []
        for image in thumbnails:
            code, png = fetch(url + image["src"])
            assert code == 200
            with Image.open(io.BytesIO(png)) as picture:
                assert picture.format == "PNG"
                low, high = picture.convert("L").getextrema()
                pictures.append((picture.size, high - low))
        # real pictures of the phantom: 128x128 (its size) and far from flat; the poison
        # object has no pixels: the small placeholder
        assert sorted(pictures)[0][0] == (48, 48)
        assert all(size == (128, 128) and spread > 50 for size, spread in sorted(pictures)[1:])
        # the re-queue action, posted as the page's form posts it
        fields = {"object_id": form["object_id"], "destination": dest}
        code, headers, _ = post(url + "/requeue", fields, {"Origin": url})
        assert (code, headers["Location"]) == (303, f"/?requeued={form['object_id']}&done=1")
        wait_for(lambda: 'class="quarantined"' in fetch(url + "/")[1].decode(), "quarantined again")
    with Image.open(shot) as picture:  # the screenshot: the page drawn, thumbnails too
        assert picture.size == (1100, 1200)
        assert len(picture.convert("L").getcolors(1 << 16) or []) > 20
    keep = os.environ.get("STATUS_PAGE_SCREENSHOT")
    if keep:  # how docs/images/status-page.png is made (docs/operations.md)
        shutil.copyfile(shot, keep)
