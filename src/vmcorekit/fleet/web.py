"""The fleet dashboard: a Starlette app, read-only on the index, no scripts at all.

    /                      top crashers with a sparkline each (?since=30d)
    /signature/{id}        count over time, kernels, modules, hosts, members, example reports
    /dump/{content_id}     that dump's triage report (the report layer's HTML renderer)
    /search?q=             dumps whose title, reason, path, kernel, host or signature match
    /api/top  /api/signature/{id}  /api/search?q=  /api/dump/{content_id}  /api/stats

Everything from a dump is escaped (html.escape) before it reaches a page; charts are inline
SVG made here; every response carries a Content-Security-Policy with no script source at all,
so even a planted `<script>` that slipped through would not run. Only these routes exist: no
static files, nothing outside the app's own pages. The index is opened read-only per request
(DuckDB lets readers in between an ingest's batch writes).
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ..errors import FleetBusyError, FleetError
from . import index, queries

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
           "x-frame-options": "DENY", "cache-control": "no-store"}
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
READ_RETRY = 5.0

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
header{background:#1f2a44;color:#fff;padding:12px 28px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600} header form{margin-left:auto}
input[type=search]{padding:4px 8px;width:320px;border-radius:4px;border:0}
main{padding:8px 28px 40px;max-width:1300px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:16px 0;padding:12px 18px}
h1{font-size:20px;margin:12px 0 4px} h2{font-size:16px;margin:4px 0 10px}
table{border-collapse:collapse;width:100%} td,th{padding:4px 10px 4px 0;text-align:left;vertical-align:top}
th{color:#555;font-weight:600;border-bottom:1px solid #dde1e7} tr:hover td{background:#f3f6fb}
.num{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#777} code,.mono{font:12px ui-monospace,monospace}
pre{background:#f3f4f6;padding:8px;overflow-x:auto;font:12px/1.35 ui-monospace,monospace;margin:6px 0}
.st-error,.st-timeout{color:#b00020;font-weight:600} .st-partial{color:#a86b00}
svg .bar{fill:#3b6fd8} svg .spark{fill:none;stroke:#3b6fd8;stroke-width:1.5} svg text{font:11px sans-serif;fill:#555}
"""


def e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


# -- inline SVG ----------------------------------------------------------------------------
def sparkline(counts: list[int], width: int = 120, height: int = 24) -> str:
    if not counts:
        return ""
    peak = max(counts) or 1
    n = len(counts)
    step = width / max(n - 1, 1)
    pts = " ".join(f"{i * step:.1f},{height - 2 - c / peak * (height - 4):.1f}" for i, c in enumerate(counts))
    total = sum(counts)
    return (f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'<title>{total} dumps in the last {n} days</title><polyline class="spark" points="{pts}"/></svg>')


def bar_chart(points: list[tuple[str, int]], width: int = 900, height: int = 180) -> str:
    """Count per day as bars, with the first and last day and the peak labelled."""
    if not points:
        return '<p class="muted">no dated dumps</p>'
    left, bottom, top = 36, 22, 10
    peak = max(c for _, c in points) or 1
    n = len(points)
    bw = (width - left) / n
    bars = []
    for i, (day, c) in enumerate(points):
        h = c / peak * (height - bottom - top)
        x = left + i * bw
        bars.append(f'<rect class="bar" x="{x + bw * 0.1:.1f}" y="{height - bottom - h:.1f}" '
                    f'width="{max(bw * 0.8, 1):.1f}" height="{h:.1f}"><title>{e(day)}: {c}</title></rect>')
    labels = (f'<text x="{left}" y="{height - 6}">{e(points[0][0])}</text>'
              f'<text x="{width}" y="{height - 6}" text-anchor="end">{e(points[-1][0])}</text>'
              f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>'
              f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>')
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'<title>dumps per day</title>{"".join(bars)}{labels}</svg>')


def _days(timeline: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The timeline with the empty days in between filled in (at most a year shown)."""
    from datetime import date, timedelta
    if not timeline:
        return []
    have = {d["day"]: d["count"] for d in timeline}
    first, last = date.fromisoformat(timeline[0]["day"]), date.fromisoformat(timeline[-1]["day"])
    first = max(first, last - timedelta(days=365))
    out, d = [], first
    while d <= last:
        out.append((d.isoformat(), have.get(d.isoformat(), 0)))
        d += timedelta(days=1)
    return out


# -- pages ---------------------------------------------------------------------------------
def page(title: str, body: str, q: str = "") -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)} · vmcorekit fleet</title><style>{CSS}</style></head><body>"
            "<header><a href=\"/\">vmcorekit fleet</a><a href=\"/api/top\">JSON</a>"
            "<form action=\"/search\" method=\"get\" role=\"search\">"
            f"<input type=\"search\" name=\"q\" value=\"{e(q)}\" placeholder=\"title, function, path, kernel, host, "
            "signature\" aria-label=\"search\"></form></header>"
            f"<main>{body}</main></body></html>")


def sig_link(sig: str | None) -> str:
    if not sig:
        return '<span class="muted">-</span>'
    return f'<a class="mono" href="/signature/{quote(sig, safe="")}">{e(sig)}</a>'


def dump_link(cid: str, text: str) -> str:
    return f'<a href="/dump/{quote(cid, safe="")}">{e(text)}</a>'


def top_page(rows: list[dict[str, Any]], since: str | None) -> str:
    trs = "".join(
        f"<tr><td>{sig_link(r['signature'])}</td><td class=\"title\">{e(r['title'])}</td><td>{e(r['class'])}</td>"
        f"<td class=\"num count\">{r['count']}</td><td class=\"num\">{r['machines']}</td><td>{sparkline(r['spark'])}</td>"
        f"<td>{e(r['first_seen'])}</td><td>{e(r['last_seen'])}</td><td>{e(', '.join(r['kernels']))}</td></tr>"
        for r in rows)
    window = f" since {e(since)}" if since else ""
    body = (f"<h1>Top crashers{window}</h1><section><table id=\"top\"><thead><tr><th>signature</th><th>title</th>"
            "<th>class</th><th class=\"num\">dumps</th><th class=\"num\">machines</th><th>last 30 days</th>"
            "<th>first seen</th><th>last seen</th><th>kernels</th></tr></thead>"
            f"<tbody>{trs}</tbody></table>{'' if rows else '<p class=muted>no dumps indexed yet</p>'}</section>")
    return page("Top crashers", body)


def _members_table(rows: list[dict[str, Any]]) -> str:
    trs = "".join(
        f"<tr><td>{dump_link(r['content_id'], r['path'])}</td><td class=\"st-{e(r['status'])}\">{e(r['status'])}</td>"
        f"<td>{e(r['crash_time'])}</td><td>{e(r['release'])}</td><td>{e(r['hostname'])}</td>"
        f"<td>{sig_link(r['signature'])}</td><td>{e(r['title'] if r['status'] in ('ok', 'partial') else r['error'])}</td>"
        "</tr>" for r in rows)
    return ("<table class=\"members\"><thead><tr><th>dump</th><th>status</th><th>crash time</th><th>kernel</th>"
            f"<th>host</th><th>signature</th><th>title / error</th></tr></thead><tbody>{trs}</tbody></table>")


def signature_page(s: dict[str, Any]) -> str:
    t = s.get("typical") or {}
    kern = "".join(f"<tr><td>{e(k['release'])}</td><td class=\"num\">{k['count']}</td></tr>" for k in s["kernels"])
    mods = "".join(f"<tr><td>{e(m['module'])}</td><td class=\"num\">{m['count']}</td></tr>" for m in s["modules"])
    hosts = "".join(f"<tr><td>{e(h['hostname'])}</td><td class=\"num\">{h['count']}</td></tr>" for h in s["hosts"])
    frames = "\n".join(e(f) for f in t.get("stack_frames") or [])
    log = "\n".join(e(x) for x in (t.get("title_lines") or [])[-40:])
    examples = "".join(f"<li>{dump_link(m['content_id'], m['path'])} <span class=\"muted\">{e(m['crash_time'])}</span>"
                       "</li>" for m in s["members"][:5])
    guilty = ", ".join(e(m) for m in s["guilty_modules"]) or "—"
    hung = ((t.get("triage") or {}).get("hung_tasks") or {})
    graph = ""
    if hung.get("chains") or hung.get("deadlocks"):
        from ..report.hung import wait_graph_svg   # escapes every label itself
        graph = f"<section id=\"hung-graph\"><h2>Hung tasks: who waits for whom</h2>{wait_graph_svg(hung)}</section>"
    body = (
        f"<h1 id=\"sig-title\">{e(s['title'])}</h1>"
        f"<p><span class=\"mono\" id=\"sig-id\">{e(s['signature'])}</span> · class {e(s['class'])} · "
        f"<b id=\"sig-count\">{s['count']}</b> dumps on {s['machines']} machines · first {e(s['first_seen'])} · "
        f"last {e(s['last_seen'])} · guilty {e(s['guilty_function'])} · rules {e(s['rules_version'])} · "
        f"<a href=\"/api/signature/{quote(s['signature'], safe='')}\">JSON</a></p>"
        f"<section><h2>Dumps per day</h2>{bar_chart(_days(s['timeline']))}</section>"
        "<section style=\"display:flex;gap:40px\">"
        f"<div><h2>Kernels</h2><table>{kern}</table></div>"
        f"<div><h2>Modules loaded</h2><p class=\"muted\">guilty: {guilty}</p><table>{mods}</table></div>"
        f"<div><h2>Hosts</h2><table>{hosts}</table></div></section>"
        f"<section><h2>Typical report: {dump_link(t.get('content_id', ''), t.get('path') or '')}</h2>"
        f"<p>{e(t.get('explanation'))}</p><pre class=\"frames\">{frames}</pre>"
        f"<details open><summary>log</summary><pre class=\"log\">{log}</pre></details>"
        f"<h2>Example reports</h2><ul>{examples}</ul></section>{graph}"
        f"<section><h2>Members</h2>{_members_table(s['members'])}</section>")
    return page(s["title"] or s["signature"], body)


def search_page(q: str, rows: list[dict[str, Any]]) -> str:
    head = f"<h1>Search: {e(q)}</h1><p id=\"result-count\">{len(rows)} dumps</p>" if q else "<h1>Search</h1>"
    return page(f"Search {q}", head + f"<section>{_members_table(rows)}</section>", q)


def not_found(what: str) -> str:
    return page("Not found", f"<h1>Not found</h1><p>{e(what)}</p>")


# -- the app -------------------------------------------------------------------------------
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def create_app(index_path: str, allowed_hosts: list[str] | None = None) -> Any:
    """The ASGI app. `allowed_hosts`: Host headers answered (None: any); a dashboard bound to
    loopback answers only loopback names, so a web page cannot reach it by DNS rebinding."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    def db(fn: Callable[[Any], Any]) -> Any:
        with index.connect(index_path, read_only=True, retry=READ_RETRY) as con:
            return fn(con)

    def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except FleetBusyError:
                return HTMLResponse(page("Busy", "<h1>The index is busy</h1><p>An ingest is writing; reload.</p>"),
                                    503, headers={"retry-after": "2"})
            except FleetError as ex:
                return HTMLResponse(page("Error", f"<h1>Error</h1><p>{e(ex)}</p>"), 400)
        return run

    def _json(obj: Any, status: int = 200) -> Response:
        return Response(json.dumps(obj, default=str), status, media_type="application/json")

    def _since(request: Request) -> tuple[str | None, float | None]:
        s = request.query_params.get("since")
        return s, queries.parse_time(s)

    def _limit(request: Request, default: int) -> int:
        try:
            return max(1, min(int(request.query_params.get("limit", default)), 5000))
        except ValueError:
            return default

    def home(request: Request) -> Response:
        s, since = _since(request)
        rows = db(lambda con: queries.top(con, since, _limit(request, 50)))
        return HTMLResponse(top_page(rows, s))

    def api_top(request: Request) -> Response:
        _, since = _since(request)
        return _json(db(lambda con: queries.top(con, since, _limit(request, 50))))

    def _show(request: Request) -> dict[str, Any] | None:
        sig = request.path_params["sig"]
        if not _ID.match(sig):
            return None
        return db(lambda con: queries.show(con, sig))

    def signature(request: Request) -> Response:
        s = _show(request)
        return HTMLResponse(signature_page(s)) if s else HTMLResponse(not_found("no such signature"), 404)

    def api_signature(request: Request) -> Response:
        s = _show(request)
        return _json(s) if s else _json({"error": "no such signature"}, 404)

    def _search(request: Request) -> tuple[str, list[dict[str, Any]]]:
        q = request.query_params.get("q", "").strip()[:200]
        if not q:
            return q, []
        return q, db(lambda con: queries.find(con, query=q, limit=_limit(request, 200)))

    def search(request: Request) -> Response:
        q, rows = _search(request)
        return HTMLResponse(search_page(q, rows))

    def api_search(request: Request) -> Response:
        return _json(_search(request)[1])

    def _report(request: Request) -> dict[str, Any] | None:
        cid = request.path_params["cid"]
        if not _ID.match(cid):
            return None
        return db(lambda con: queries.report(con, cid))

    def dump(request: Request) -> Response:
        r = _report(request)
        if r is None:
            return HTMLResponse(not_found("no such dump"), 404)
        if not r.get("triage"):
            body = (f"<h1>{e(r['path'])}</h1><p class=\"st-{e(r['status'])}\">{e(r['status'])}: {e(r['error'])}</p>"
                    f"<p>content id <span class=\"mono\">{e(r['content_id'])}</span></p>")
            return HTMLResponse(page(r["path"], body))
        from ..report.render_html import render_html
        return HTMLResponse(render_html(r["triage"]))

    def api_dump(request: Request) -> Response:
        r = _report(request)
        return _json(r) if r else _json({"error": "no such dump"}, 404)

    def api_stats(request: Request) -> Response:
        return _json(db(queries.stats))

    routes = [Route("/", guarded(home)), Route("/signature/{sig}", guarded(signature)),
              Route("/dump/{cid}", guarded(dump)), Route("/search", guarded(search)),
              Route("/api/top", guarded(api_top)), Route("/api/signature/{sig}", guarded(api_signature)),
              Route("/api/search", guarded(api_search)), Route("/api/dump/{cid}", guarded(api_dump)),
              Route("/api/stats", guarded(api_stats))]
    middleware = [] if allowed_hosts is None else [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
    app = Starlette(routes=routes, middleware=middleware)

    async def headers_everywhere(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                hs = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in HEADERS]
                hs += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": hs}
            await send(message)

        await app(scope, receive, send_with_headers)

    headers_everywhere.app = app  # type: ignore[attr-defined]
    return headers_everywhere


def serve(index_path: str, host: str, port: int, announce: Callable[[str], None] | None = None) -> None:
    """Run the dashboard until interrupted. Port 0 picks a free port (announced)."""
    import socket

    import uvicorn

    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as ex:
        sock.close()
        raise FleetError(f"cannot listen on {host}:{port}: {ex.strerror or ex}") from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if fam == socket.AF_INET6 else host
    if announce:
        announce(f"http://{shown}:{bound}/")
    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    hosts = [*LOOPBACK_HOSTS, host] if loopback else None
    config = uvicorn.Config(create_app(index_path, hosts), log_level="warning", access_log=False,
                            server_header=False, date_header=False)
    uvicorn.Server(config).run(sockets=[sock])
