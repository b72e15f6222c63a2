"""Log in to a ramp-frontend server and read an event's leaderboard page.

Standard library only (``urllib``, ``http.cookiejar``, ``html.parser``), so that
the test suite can use it from the kit's ``.venv`` as well as ``deploy.py``
from ``.venv-rampboard``.

>>> client = RampClient("http://127.0.0.1:8080")          # doctest: +SKIP
>>> client.login("organiser", "secret")                   # doctest: +SKIP
>>> page = client.get("/events/galaxy_deblending_local/leaderboard")  # doctest: +SKIP
>>> table = parse_table(page, table_id="leaderboard")      # doctest: +SKIP
"""
from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["RampClient", "Table", "parse_table", "LoginError", "wait_for_server"]


class LoginError(RuntimeError):
    """The server did not accept the login."""


@dataclass(frozen=True)
class Table:
    """An HTML table: ``header`` (column names) and ``rows`` (cell texts, one list per row)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def records(self) -> list[dict[str, str]]:
        """One ``{column: cell text}`` per row."""
        return [dict(zip(self.header, row)) for row in self.rows]

    def to_text(self, columns: list[str] | None = None) -> str:
        """Fixed-width text rendering of ``columns`` (all by default)."""
        cols = list(self.header) if columns is None else [c for c in columns if c in self.header]
        idx = [self.header.index(c) for c in cols]
        cells = [cols] + [[row[i] if i < len(row) else "" for i in idx] for row in self.rows]
        widths = [max(len(r[j]) for r in cells) for j in range(len(cols))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


class _TableParser(HTMLParser):
    def __init__(self, table_id: str | None):
        super().__init__(convert_charrefs=True)
        self.table_id = table_id
        self.depth = 0  # nesting depth inside the wanted table (0: outside)
        self.done = False
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if tag == "table":
            if self.depth:
                self.depth += 1
            elif self.table_id is None or dict(attrs).get("id") == self.table_id:
                self.depth = 1
            return
        if self.depth != 1:
            return
        if tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if self.done or not self.depth:
            return
        if tag == "table":
            self.depth -= 1
            if not self.depth:
                self.done = True
            return
        if self.depth != 1:
            return
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._in_head or not self.header:
                self.header = self._row
            else:
                self.rows.append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False

    def handle_data(self, data):
        if self.depth == 1 and self._cell is not None:
            self._cell.append(data)


def parse_table(html: str, *, table_id: str | None = None) -> Table:
    """The first ``<table>`` of ``html`` (with ``id=table_id`` if given) as a :class:`Table`.

    Raises
    ------
    ValueError
        If there is no such table.
    """
    parser = _TableParser(table_id)
    parser.feed(html)
    parser.close()
    if not parser.done and not parser.header:
        what = f'id="{table_id}"' if table_id else "any"
        raise ValueError(f"no <table> with {what} in the page ({len(html)} characters)")
    return Table(tuple(parser.header), tuple(tuple(r) for r in parser.rows))


class RampClient:
    """A logged-in browser session on a ramp-frontend server.

    Parameters
    ----------
    base_url : str
        ``http://127.0.0.1:PORT`` (no trailing slash needed).
    timeout : float
        Seconds per request.
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        """Body of ``GET path`` as text (HTTPError for statuses >= 400)."""
        with self._opener.open(self.base_url + path, timeout=self.timeout) as r:
            return r.read().decode(r.headers.get_content_charset() or "utf-8", errors="replace")

    def login(self, user: str, password: str) -> None:
        """Fill in and post the ``/login`` form (with its CSRF token)."""
        page = self.get("/login")
        m = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', page)
        fields = {"user_name": user, "password": password}
        if m:
            fields["csrf_token"] = m.group(1)
        data = urllib.parse.urlencode(fields).encode()
        with self._opener.open(self.base_url + "/login", data, timeout=self.timeout) as r:
            landing = r.geturl()
            body = r.read().decode("utf-8", errors="replace")
        if urllib.parse.urlparse(landing).path.rstrip("/") == "/login":
            flashed = re.findall(r'class="[^"]*alert[^"]*"[^>]*>(.*?)<', body, flags=re.S)
            raise LoginError(
                f"login of {user!r} at {self.base_url} was refused"
                + (f": {' '.join(' '.join(f.split()) for f in flashed)}" if flashed else "")
            )


def wait_for_server(url: str, *, timeout: float = 60.0, alive=None) -> None:
    """Poll ``url`` until it answers (any HTTP status), for at most ``timeout`` seconds.

    ``alive``: optional callable; when it returns False (the server process
    died) the wait stops at once with RuntimeError.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the server process for {url} exited before answering")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s (last error: {last})")
