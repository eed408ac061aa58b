"""A local Mosquitto broker for the demo, tests and benchmarks: token auth, ACL, plain and TLS
listeners on loopback, with a throwaway CA.

The gateway authenticates as the platform expects (username ``use-token-auth``, the token as
password); the emulator logs in as an application user. The ACL lets the gateway publish only
events and DM messages and read only commands, notify and DM requests, as the platform would.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edged.netutil import free_port, wait_for_port

GATEWAY_USER = "use-token-auth"
APP_USER = "a-testorg-app"
_ACL = """\
user use-token-auth
topic write iot-2/type/+/id/+/evt/+/fmt/+
topic read iot-2/type/+/id/+/cmd/+/fmt/+
topic read iot-2/type/+/id/+/notify
topic write iotdevice-1/#
topic read iotdm-1/#

user a-testorg-app
topic readwrite #
"""


@dataclass(frozen=True)
class LocalCA:
    """A throwaway CA and a server certificate for ``localhost`` / ``127.0.0.1``."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path  # a CA that did not sign the server certificate

    @classmethod
    def create(cls, directory: Path) -> LocalCA:
        """Generate the files with openssl (about 0.5 s)."""
        directory.mkdir(parents=True, exist_ok=True)

        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

        for name in ("ca", "other-ca"):
            run(
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3",
                "-subj",
                f"/CN=edged {name}",
                # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs these.
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-addext",
                "subjectKeyIdentifier=hash",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.crt",
            )
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        )
        (directory / "san.ext").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        run(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        )
        return cls(
            directory / "ca.crt",
            directory / "server.crt",
            directory / "server.key",
            directory / "other-ca.crt",
        )


@dataclass
class Broker:
    """One mosquitto process; restartable with the same persistence directory and ports."""

    workdir: Path
    ca: LocalCA
    gateway_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    extra_listeners: tuple[int, ...] = ()
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    def _write_files(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        passwd = self.workdir / "passwd"
        passwd.write_text("")
        for user, password in ((GATEWAY_USER, self.gateway_token), (APP_USER, self.app_password)):
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), user, password],
                check=True,
                capture_output=True,
            )
        (self.workdir / "acl").write_text(_ACL)
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {self.workdir / 'acl'}",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            f"listener {self.port} 127.0.0.1",
            *(f"listener {port} 127.0.0.1" for port in self.extra_listeners),
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.ca.ca_file}",
            f"certfile {self.ca.cert_file}",
            f"keyfile {self.ca.key_file}",
            "require_certificate false",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else mosquitto drops to 'mosquitto' before reading keys
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    @property
    def log_path(self) -> Path:
        """Where the broker's log goes."""
        return self.workdir / "mosquitto.log"

    def start(self) -> None:
        """Start (or restart) the broker and wait until every listener accepts connections."""
        assert self.process is None, "broker already running"
        conf = self._write_files()
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=log, stderr=log)
        for port in (self.port, self.tls_port, *self.extra_listeners):
            wait_for_port(port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM saves its persistence file; SIGKILL does not)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        """Stop, then start again with the same ports and persistence directory."""
        self.stop()
        self.start()

    def log(self) -> str:
        """The broker's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
