"""ClickHouse's HTTP interface on loopback, answered by chdb: the `clickhouses://`-side of the store in CI.

There is no ClickHouse server in CI (Debian's is from 2018), but clickhouse-
connect's HTTP transport is what a `clickhouse://` store uses in production:
parameters in the URL, inserts in the request body, results streamed back.
This endpoint speaks that protocol (the subset clickhouse-connect uses: query
in the body or the ``query`` parameter with data in the body, ``param_*``
bindings (in the URL, or as form fields when large), ``database``, settings as parameters, ``X-ClickHouse-*`` headers,
errors as HTTP 500 with the exception code) and runs every statement in the
real ClickHouse engine through chdb. So the store's whole server path runs in
CI; what it cannot show (a real server's networking, users, replication) is
what `NETVIGIL_CLICKHOUSE_URL` is for.
"""

from __future__ import annotations

import email.policy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

# Parameters that steer the HTTP exchange rather than being ClickHouse settings.
_TRANSPORT = {"query", "database", "query_id", "session_id", "session_timeout", "session_check", "default_format",
              "client_protocol_version", "enable_http_compression", "compress", "decompress", "wait_end_of_query",
              "buffer_size", "user", "password"}
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)")
_RESULT_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN")


# A server's default http_max_field_value_size: a longer form field is refused.
MAX_FIELD_VALUE = 128 * 1024


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
              for part in message.iter_parts()}
    too_long = [name for name, value in fields.items() if len(value.encode()) > MAX_FIELD_VALUE]
    if too_long:
        raise ValueError(f"Code: 1. DB::Exception: Field value too long: {too_long[0]}. (BAD_ARGUMENTS)")
    return fields


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows failures
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        import chdb

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") not in (None, "", "identity"):
            return self._reply(400, b"Code: 1. DB::Exception: this endpoint takes no compressed bodies", {})
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        if (self.headers.get("Content-Type") or "").startswith("multipart/form-data"):
            # Large bindings come as a form: the query and the param_* values are its fields.
            try:
                params.update(_form_fields(self.headers["Content-Type"], body))
            except ValueError as exc:
                return self._reply(400, str(exc).encode(), {"X-ClickHouse-Exception-Code": "1"})
            body = b""
        query = params.get("query", "")
        sql = (query + "\n" + body.decode()) if query and body else (query or body.decode())
        bind = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT and not k.startswith("param_")}
        fmt_match = _FORMAT.search(sql) if not query or not body else None
        fmt = fmt_match.group(1) if fmt_match else params.get("default_format", "TabSeparated")
        conn = chdb.connect(":memory:")
        try:
            if params.get("database"):
                conn.query(f"USE `{params['database']}`", "TabSeparated")
            for key, value in settings.items():
                conn.query(f"SET {key} = '{value.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'",
                           "TabSeparated")
            result = conn.query(sql, fmt, params=bind or None)
            out = result.bytes() or b""
            summary = {"read_rows": str(result.rows_read()), "written_rows": str(result.rows_written())}
        except Exception as exc:  # the engine's error, as a server sends it
            text = str(exc)
            code = _CODE.search(text)
            return self._reply(500, text.encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1"})
        finally:
            conn.close()
        headers = {"X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Timezone": "UTC",
                   "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4())}
        if out or sql.lstrip().upper().startswith(_RESULT_STATEMENTS):
            headers["X-ClickHouse-Format"] = fmt
        self._reply(200, out, headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def clickhouse_http_endpoint() -> Iterator[str]:
    """``clickhouse://127.0.0.1:PORT`` served by chdb's in-memory engine until the block ends."""
    import chdb

    # Each request has a connection of its own; this one keeps the in-memory engine (and its data) alive.
    anchor = chdb.connect(":memory:")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"clickhouse://default:@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        anchor.close()


def test_endpoint_answers_like_a_server() -> None:
    """The protocol points the store relies on: bound parameters, inserts in the body, errors with codes."""
    from test_clickhouse import require_chdb

    require_chdb()
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    with clickhouse_http_endpoint() as url:
        port = int(url.rsplit(":", 1)[1])
        client = clickhouse_connect.get_client(host="127.0.0.1", port=port, autogenerate_session_id=False)
        assert client.server_version.count(".") >= 2
        db = f"endpoint_{uuid.uuid4().hex[:8]}"
        client.command(f"CREATE DATABASE {db}")
        client.database = db
        client.command("CREATE TABLE t (a String, b Nullable(Int64)) ENGINE = MergeTree ORDER BY a")
        client.raw_insert("t", None, b'{"a":"x\\ty","b":1}\n{"a":"z","b":null}\n', fmt="JSONEachRow")
        rows = client.query("SELECT a, b FROM t WHERE a IN {v:Array(String)} ORDER BY a",
                            parameters={"v": ["x\ty", "z", "it's"]}).result_rows
        assert rows == [("x\ty", 1), ("z", None)]
        many = [f"uid-{i:05d}" for i in range(3000)] + ["z"]  # too long for a URL: sent as a form
        assert client.query("SELECT count() FROM t WHERE a IN {v:Array(String)}",
                            parameters={"v": many}).result_rows == [(1,)]
        with pytest.raises(DatabaseError, match="UNKNOWN_IDENTIFIER|Unknown expression"):
            client.query("SELECT nope FROM t")
        client.command(f"DROP DATABASE {db}")
        client.close()
