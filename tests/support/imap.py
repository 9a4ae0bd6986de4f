"""A real IMAP server for the tests: Debian's Dovecot (``dovecot-imapd``, installed by scripts/bootstrap-venv),
started by the test with a configuration of its own, on its own port, with its own Maildir under a
temporary directory and one user from a static password file. Nothing of the system's Dovecot is used."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.smtp import free_port
from tests.support.tlscerts import Issued

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
instance_name = mitwirkung-test-{port}
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


class Dovecot:
    def __init__(
        self, root: Path, user: str = "bounces", password: str = "bounce-secret", tls: Issued | None = None
    ) -> None:
        """With ``tls`` (a certificate and key, e.g. from a test CA), also IMAP over TLS on ``tls_port``."""
        self.root = root
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0
        self.user = user
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # Dovecot serves no mail as root: the mailbox belongs to its own system user when the tests run as
        # root, else to whoever runs them.
        owner = pwd.getpwnam("dovecot") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        self.uid, self.gid = owner.pw_uid, owner.pw_gid

    @property
    def url(self) -> str:
        return f"imap://{self.user}:{self.password}@127.0.0.1:{self.port}/INBOX"

    @property
    def tls_url(self) -> str:
        return f"imaps://{self.user}:{self.password}@127.0.0.1:{self.tls_port}/INBOX"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user

    def start(self) -> None:
        for sub in ("run", "state", "home", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("new", "cur", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        # Dovecot's auth process runs as its own user: it must reach the password file.
        self.root.chmod(0o755)
        (self.root / "users").chmod(0o644)
        config = self.root / "dovecot.conf"
        ssl = "ssl = no"
        if self.tls is not None:
            ssl = f"ssl = yes\nssl_cert = <{self.tls.cert_file}\nssl_key = <{self.tls.key_file}"
        config.write_text(
            _CONFIG.format(
                root=self.root, port=self.port, tls_port=self.tls_port, uid=self.uid, gid=self.gid, ssl=ssl
            )
        )
        for path in (self.root / "mail", self.root / "home", *self.root.glob("mail/**/*")):
            os.chown(path, self.uid, self.gid)
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot ended: {self.process.stderr.read().decode()} {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def deliver(self, raw: bytes) -> str:
        """Put a mail into the user's INBOX as a delivery agent does (Maildir: write to tmp, move to new)."""
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.mitwirkung-test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw.replace(b"\r\n", b"\n"))
        os.chown(tmp, self.uid, self.gid)
        tmp.rename(self.maildir / "new" / name)
        return name

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
