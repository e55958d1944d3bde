"""A file server over HTTPS on a loopback address, with a certificate of its own (trusted by
the tests through SSL_CERT_FILE), for `https://` sources: files, redirects, a server that
stalls, answers too large, errors."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, 127.0.0.1 and 127.0.0.2 (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "designflow test files")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost")] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "127.0.0.2")
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class FileServer:
    """GET /files/<name>: the bytes given; /redirect?to=URL: 302; /stall: headers, then
    nothing; /endless: a body without length that never ends; /declared-large: a length of
    1 GB; /status/<code>: that answer."""

    def __init__(self, host: str, cert: Path, key: Path, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                parts = urlsplit(self.path)
                if parts.path.startswith("/files/"):
                    data = server.files.get(parts.path[len("/files/") :])
                    if data is None:
                        return self._status(404)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif parts.path == "/stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    self.wfile.write(b"\x89PNG")
                    self.wfile.flush()
                    time.sleep(8)
                elif parts.path == "/endless":
                    self.send_response(200)
                    self.end_headers()  # no length: read until the connection ends
                    chunk = b"\0" * 65536
                    try:
                        for _ in range(1000):  # 64 MB at most
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                elif parts.path == "/declared-large":
                    self.send_response(200)
                    self.send_header("Content-Length", str(1024**3))
                    self.end_headers()
                elif parts.path.startswith("/status/"):
                    self._status(int(parts.path.rsplit("/", 1)[1]))
                else:
                    self._status(404)

            def _status(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.host = host
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
