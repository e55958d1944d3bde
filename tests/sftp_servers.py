"""Real SFTP servers on 127.0.0.1 for tests and benchmarks.

`OpenSshServer` runs the machine's `sshd` with its own config, host key and authorized key
under a temporary folder; `AsyncSshServer` runs an asyncssh SFTP server in a thread of this
process, for machines without sshd. Both can be killed (connections included) and restarted
on the same port with the same host key.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _make_keys_with_asyncssh(folder: Path) -> None:
    import asyncssh

    for name in ("host_ed25519", "client_ed25519", "other_client_ed25519", "other_host_ed25519"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(folder / name))
        key.write_public_key(str(folder / f"{name}.pub"))
        os.chmod(folder / name, 0o600)


class _Base:
    kind = "base"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = folder / "nas-root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = os.environ.get("USER") or _current_user()
        if shutil.which("ssh-keygen"):
            for name in (
                "host_ed25519",
                "client_ed25519",
                "other_client_ed25519",
                "other_host_ed25519",
            ):
                _keygen(folder / name)
        else:
            _make_keys_with_asyncssh(folder)
        self.key_file = str(folder / "client_ed25519")
        self.wrong_key_file = str(folder / "other_client_ed25519")
        (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
        os.chmod(folder / "authorized_keys", 0o600)
        self.known_hosts = str(folder / "known_hosts")
        self._write_known_hosts("host_ed25519.pub", self.known_hosts)
        self.wrong_known_hosts = str(folder / "known_hosts_wrong")
        self._write_known_hosts("other_host_ed25519.pub", self.wrong_known_hosts)

    def _write_known_hosts(self, pub: str, dest: str) -> None:
        kind, key = (self.folder / pub).read_text().split()[:2]
        Path(dest).write_text(f"[127.0.0.1]:{self.port} {kind} {key}\n")

    @property
    def url(self) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.root}"

    def env(self) -> dict[str, str]:
        return {
            "DESIGNFLOW_NAS_URL": self.url,
            "DESIGNFLOW_NAS_KEY_FILE": self.key_file,
            "DESIGNFLOW_NAS_KNOWN_HOSTS": self.known_hosts,
        }

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} SFTP server did not start on port {self.port}")
            time.sleep(0.05)

    def restart(self) -> None:
        self.kill()
        self.start()


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


class OpenSshServer(_Base):
    kind = "openssh"

    def __init__(self, folder: Path, sftp_log_level: str = "") -> None:
        """`sftp_log_level` (VERBOSE, say): the SFTP server logs each request it serves
        (open, fsync, rename ...) to sshd.log, as a NAS operator would read them."""
        super().__init__(folder)
        self.config = folder / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {folder / 'host_ed25519'}\n"
            f"PidFile {folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PermitRootLogin yes\n"
            "MaxStartups 200\n"
            "MaxSessions 200\n"
            f"LogLevel {sftp_log_level or 'ERROR'}\n"
            f"Subsystem sftp {self._logged_sftp(sftp_log_level) if sftp_log_level else 'internal-sftp'}\n"
        )
        self.proc: subprocess.Popen | None = None

    def _logged_sftp(self, level: str) -> str:
        """OpenSSH's own sftp-server logging each request to sftp.log (sshd runs a
        subsystem command through the user's shell, so the redirection applies)."""
        binary = shutil.which("sftp-server") or "/usr/lib/openssh/sftp-server"
        return f"{binary} -e -l {level} 2>>{self.folder / 'sftp.log'}"

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "sshd.log", "ab"),  # noqa: SIM115
            start_new_session=True,  # its own process group: kill() takes the sessions too
        )
        self.wait_ready()

    def kill(self) -> None:
        if self.proc is None:
            return
        import psutil

        # Per-connection sessions run in their own sessions (setsid), so killing the process
        # group is not enough: take every descendant, as a crash of the server host would.
        try:
            victims = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            victims = []
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child in victims:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)
        _wait_dead(victims)
        self.proc = None

    def stop(self) -> None:
        self.kill()


def _wait_dead(victims: list, timeout: float = 5.0) -> None:
    """Until every killed session is gone or a zombie. A zombie holds no socket or file any
    more, and waiting for it to be reaped (by init, not by us) took ~1.8 s: time added to
    a test's outage that its retries were not sized for."""
    import psutil

    deadline = time.monotonic() + timeout
    for proc in victims:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)


class AsyncSshServer(_Base):
    kind = "asyncssh"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._connections: set = set()

    def start(self) -> None:
        import asyncssh

        ready = threading.Event()
        errors: list[BaseException] = []
        root = str(self.root)
        connections = self._connections

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn) -> None:
                self._conn = conn
                connections.add(conn)

            def connection_lost(self, exc) -> None:
                connections.discard(getattr(self, "_conn", None))

        async def main() -> None:
            try:
                self._server = await asyncssh.listen(
                    "127.0.0.1",
                    self.port,
                    server_factory=Server,
                    server_host_keys=[str(self.folder / "host_ed25519")],
                    authorized_client_keys=str(self.folder / "authorized_keys"),
                    sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
                    allow_scp=False,
                )
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            ready.set()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(main(), self._loop)
        ready.wait(10)
        if errors:
            raise errors[0]
        self.wait_ready()

    @property
    def url(self) -> str:
        # The server is chrooted at `root`: paths are relative to it.
        return f"sftp://{self.user}@127.0.0.1:{self.port}/"

    def kill(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for conn in list(self._connections):
                conn.abort()
            self._connections.clear()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def stop(self) -> None:
        self.kill()


def start_sftp_server(folder: Path, prefer: str | None = None) -> _Base:
    """OpenSSH when sshd is installed, else asyncssh; DESIGNFLOW_TEST_SFTP=asyncssh forces it
    outside CI. Under CI=true the SFTP tests run against OpenSSH, whatever is asked: a
    missing sshd fails the run instead of a quiet fallback, and the variable cannot switch
    the real server off."""
    prefer = prefer or os.environ.get("DESIGNFLOW_TEST_SFTP", "openssh")
    if os.environ.get("CI") == "true":
        if not SSHD:
            raise RuntimeError("CI=true: OpenSSH's sshd is required for the SFTP tests")
        prefer = "openssh"
    server: _Base = (
        OpenSshServer(folder) if (prefer == "openssh" and SSHD) else AsyncSshServer(folder)
    )
    server.start()
    return server
