"""A stand-in for api.kaggle.com that speaks the kaggle 2.2 client's protocol, on 127.0.0.1 only.

The real client (``kaggle`` + ``kagglesdk``) is pointed at it by patching
``kagglesdk.kaggle_env._env_to_endpoint``. API calls are JSON ``POST /v1/<Service>/<Method>`` with
HTTP Basic auth; downloads answer a 302 to ``/blobs/...`` which the client then GETs; submissions
PUT their bytes to the ``createUrl`` handed out by ``StartSubmissionUpload``. Everything received is
recorded in ``calls`` / ``uploads`` so tests assert on what the client really sent.

``echo`` names requests (API methods, ``"blob"`` for a download's GET, ``"upload"`` for the submission PUT)
answered with ``echo_status`` and an error body that repeats the whole request back, headers included (the
``Authorization`` header with ``base64(user:key)`` or the bearer token), as a careless proxy or server does.
"""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

SERVICES = ("/v1/competitions.CompetitionApiService/", "/v1/security.OAuthService/")
USER = "tester"
KEY = "k3y-5ecret-0123456789abcdef"  # the test account's key: must never show up in any output


def secret_forms(user: str = USER, key: str = KEY) -> dict[str, str]:
    """Every form of the credentials that must never be shown, by name."""
    basic = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"key": key, "base64(user:key)": basic, "base64(user:key) unpadded": basic.rstrip("="),
            "base64(key)": base64.b64encode(key.encode()).decode().rstrip("="), "Authorization value": f"Basic {basic}"}


def block_outside_network(monkeypatch: Any) -> None:
    """Any attempt to resolve a host other than the loopback fails the test loudly (the real client must only ever
    reach the stand-in)."""
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


def point_client_at(monkeypatch: Any, url: str) -> None:
    """Send the real client's requests (production and local endpoints) to ``url``."""
    from kagglesdk import kaggle_env

    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, url)
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, url)


@dataclass
class FakeKaggle:
    username: str
    key: str
    files: dict[str, bytes] = field(default_factory=dict)  # listed competition file -> bytes
    deliver_as: dict[str, str] = field(default_factory=dict)  # listed name -> name in the download URL
    all_zip: bytes | None = None  # the download-all archive
    submissions: list[dict[str, Any]] = field(default_factory=list)  # ListSubmissions rows, camelCase
    forbidden: set[str] = field(default_factory=set)  # methods answered with 403
    delay: dict[str, float] = field(default_factory=dict)  # method -> seconds to wait before answering
    upload_status: int = 200
    echo: set[str] = field(default_factory=set)  # requests answered with an error that repeats the request
    echo_status: int = 500
    token: str | None = None  # an access token accepted as "Bearer <token>" besides user:key
    calls: list[tuple[str, dict]] = field(default_factory=list)  # (method, JSON body) of every API call
    gets: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # upload token -> bytes PUT
    auth_seen: list[str] = field(default_factory=list)  # Authorization header of every API call
    url: str = ""

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    def bodies(self, method: str) -> list[dict]:
        return [b for m, b in self.calls if m == method]

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # ---------------------------------------------------------------------- API methods

    def api_IntrospectToken(self, body: dict) -> tuple[int, Any]:
        active = self.token is not None and body.get("token") == self.token
        return 200, {"active": active, "username": self.username if active else ""}

    def api_ListDataFiles(self, body: dict) -> tuple[int, Any]:
        return 200, {"files": [{"name": n, "totalBytes": len(b)} for n, b in self.files.items()], "nextPageToken": ""}

    def api_DownloadDataFiles(self, body: dict) -> tuple[int, Any]:
        return 302, f"{self.url}/blobs/all/{quote(body['competitionName'])}-all.zip?sig=abc"

    def api_DownloadDataFile(self, body: dict) -> tuple[int, Any]:
        name = body["fileName"]
        if name not in self.files:
            return 404, {"code": 404, "message": f"file {name} not found"}
        return 302, f"{self.url}/blobs/file/{quote(self.deliver_as.get(name, name))}?sig=abc"

    def api_StartSubmissionUpload(self, body: dict) -> tuple[int, Any]:
        token = f"blob-{len(self.calls)}"
        return 200, {"token": token, "createUrl": f"{self.url}/upload/{token}"}

    def api_CreateSubmission(self, body: dict) -> tuple[int, Any]:
        token = body.get("blobFileTokens", "")
        if token not in self.uploads:
            return 400, {"code": 400, "message": "unknown blob token"}
        ref = 50000 + len(self.submissions)
        self.submissions.insert(0, {"ref": ref, "fileName": "submission.csv", "description": body.get("submissionDescription", ""),
                                    "status": "PENDING", "date": "2026-11-21T12:00:00.000Z"})
        return 200, {"message": "Successfully submitted", "ref": ref}

    def api_ListSubmissions(self, body: dict) -> tuple[int, Any]:
        size = int(body.get("pageSize") or 20)
        start = int(body.get("pageToken") or 0)
        page = self.submissions[start : start + size]
        more = start + size < len(self.submissions)
        return 200, {"submissions": page, "nextPageToken": str(start + size) if more else ""}

    def blob(self, path: str) -> bytes | None:
        kind, _, name = path.removeprefix("/blobs/").partition("/")
        if kind == "all":
            return self.all_zip
        by_url_name = {self.deliver_as.get(n, n): b for n, b in self.files.items()}
        return by_url_name.get(unquote(name))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKaggle

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _echo(self, raw: bytes = b"", json_body: bool = True) -> None:
        """Answer with an error whose message repeats the request: line, every header, body."""
        auth = self.headers.get("Authorization", "")
        headers = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        text = (f"internal error handling {self.command} {self.path}: Authorization: {auth} was not expected here "
                f"({auth.partition(' ')[2]}); headers: {headers}; body: {raw[:500].decode(errors='replace')}")
        if json_body:
            return self._send(self.fake.echo_status, {"code": self.fake.echo_status, "message": text, "request": dict(self.headers)})
        self._send(self.fake.echo_status, text.encode(), content_type="text/plain")

    def _send(self, status: int, payload: Any = None, content_type: str = "application/json", headers: dict | None = None) -> None:
        body = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if body or status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        fake = self.fake
        raw = self._read_body()
        path = urlsplit(self.path).path
        service = next((s for s in SERVICES if path.startswith(s)), None)
        if service is None:
            return self._send(404, {"code": 404, "message": f"no service at {path}"})
        method = path.removeprefix(service)
        body = json.loads(raw or b"{}")
        fake.calls.append((method, body))
        accepted = {"Basic " + base64.b64encode(f"{fake.username}:{fake.key}".encode()).decode()}
        if fake.token:
            accepted.add(f"Bearer {fake.token}")
        fake.auth_seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") not in accepted:
            return self._send(401, {"code": 401, "message": "Unauthenticated"})
        time.sleep(fake.delay.get(method, 0))
        if method in fake.echo:
            return self._echo(raw)
        if method in fake.forbidden:
            return self._send(403, {"code": 403, "message": "You must accept this competition's rules before you'll be able to do this."})
        handler = getattr(fake, f"api_{method}", None)
        if handler is None:
            return self._send(404, {"code": 404, "message": f"unknown method {method}"})
        status, payload = handler(body)
        if status == 302:
            return self._send(302, None, headers={"Location": payload})
        self._send(status, payload)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.fake.gets.append(path)
        if "blob" in self.fake.echo:
            return self._echo()
        data = self.fake.blob(path) if path.startswith("/blobs/") else None
        if data is None:
            return self._send(404, {"code": 404, "message": "no such blob"})
        self._send(200, data, content_type="application/octet-stream")

    def do_PUT(self) -> None:
        path = urlsplit(self.path).path
        data = self._read_body()
        if not path.startswith("/upload/"):
            return self._send(404, {"code": 404, "message": "no such upload"})
        if "upload" in self.fake.echo:
            return self._echo(data, json_body=False)
        if self.fake.upload_status in (200, 201):
            self.fake.uploads[path.removeprefix("/upload/")] = data
        self._send(self.fake.upload_status, b"", content_type="text/plain")
