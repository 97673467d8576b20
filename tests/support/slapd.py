"""A throwaway OpenLDAP server (Debian's slapd) on 127.0.0.1, for the directory login tests.

    with SlapdServer(tmp_path, tls=ca.issue(["127.0.0.1"])) as directory:
        directory.add(person("alice", "pw") + group("devs", ["alice"]))   # through ldapadd: overlays run
        directory.binds(user_dn("alice"))                                # from slapd's own log

Everything is generated in `base_dir`: slapd.conf (the core, cosine and inetorgperson schemas; one mdb
database for SUFFIX with the memberof overlay, so users carry memberOf; access rules under which only the
service account may search, and anyone may only bind), the database, the pid file and the log. slapd runs
in the foreground (`-d stats`) as a child of this process, logging every operation (ACCEPT, BIND, SRCH,
STARTTLS) to `log_path`. It listens on ldap://127.0.0.1:`port` (StartTLS offered when it has a certificate)
and ldaps://127.0.0.1:`tls_port` (also on 127.0.0.2, an address its certificate does not name). No system service and nothing in /etc/ldap take part; `stop()` and
`start()` keep the data and the ports, as a restarted directory would.

Needs slapd and ldapadd (Debian: `scripts/system-deps slapd ldap-utils`).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from tests.support.process import terminate
from tests.support.testca import ServerCert

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=registry,ou=services,{SUFFIX}"
INSTALL_HINT = "slapd and ldapadd are needed: `scripts/system-deps slapd ldap-utils` as root " \
               "(or apt-get install -y slapd ldap-utils)"
OTHER_ADDRESS = "127.0.0.2"
SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")


class SlapdUnavailable(RuntimeError):
    """slapd cannot be run here; the message says how to fix it."""


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def _attribute(name: str, value: str) -> str:
    """One LDIF line; base64 (`::`) so any password or name survives."""
    return f"{name}:: {base64.b64encode(value.encode()).decode()}\n"


def person(uid: str, password: str) -> str:
    """LDIF of an inetOrgPerson under ou=people."""
    return (f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\n" + _attribute("uid", uid) + _attribute("cn", uid)
            + _attribute("sn", uid) + _attribute("userPassword", password) + "\n")


def group(cn: str, members: Iterable[str]) -> str:
    """LDIF of a groupOfNames under ou=groups, its members given by uid."""
    lines = [f"dn: {group_dn(cn)}\n", "objectClass: groupOfNames\n", f"cn: {cn}\n"]
    lines += [f"member: {user_dn(uid)}\n" for uid in members]
    return "".join(lines) + "\n"


class SlapdServer:
    def __init__(self, base_dir: Path, tls: ServerCert | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port()
        self.root_password = secrets.token_hex(12)
        self.service_password = secrets.token_hex(12)
        self.log_path = self.base_dir / f"slapd-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._seeded = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> SlapdServer:
        slapd = shutil.which("slapd") or "/usr/sbin/slapd"
        if not os.access(slapd, os.X_OK) or not shutil.which("ldapadd"):
            raise SlapdUnavailable(INSTALL_HINT)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "data").mkdir(exist_ok=True)
        config = self.base_dir / "slapd.conf"
        config.write_text(self._config())
        # ldaps:// on a second loopback address too: a name the certificate does not hold.
        urls = self.url + "/" + (f" {self.tls_url}/ ldaps://{OTHER_ADDRESS}:{self.tls_port}/" if self.tls else "")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([slapd, "-d", "stats", "-f", str(config), "-h", urls],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}; log {self.log_path}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"slapd did not listen on {self.url} within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        if not self._seeded:
            self.add(self._base_entries())
            self._seeded = True
        return self

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content ----------------------------------------------------------------------------------
    def add(self, ldif: str) -> None:
        """Entries added over LDAP as the root DN (so the memberof overlay fills in memberOf)."""
        result = subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", ROOT_DN, "-w", self.root_password],
                                input=ldif, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"ldapadd failed ({result.returncode}): {result.stderr.strip()}\n{ldif}")

    # -- what slapd saw ---------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def binds(self, dn: str) -> int:
        """Simple binds as `dn` so far (slapd logs `BIND dn="..." method=128` for each)."""
        return self.log_text().count(f'BIND dn="{dn}" method=128')

    def filters(self, since: int = 0) -> list[str]:
        """The filter of every search so far (or since that offset of the log), as slapd logged it (escapes
        in upper-case hex)."""
        found = []
        for line in self.log_text()[since:].splitlines():
            if " SRCH base=" in line and ' filter="' in line:
                found.append(line.split(' filter="', 1)[1].rsplit('"', 1)[0])
        return found

    # -- internals --------------------------------------------------------------------------------
    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _config(self) -> str:
        tls = ""
        if self.tls:
            tls = (f"TLSCACertificateFile {self.tls.ca_file}\nTLSCertificateFile {self.tls.cert_file}\n"
                   f"TLSCertificateKeyFile {self.tls.key_file}\n")
        schemas = "".join(f"include {SCHEMAS / name}.schema\n" for name in ("core", "cosine", "inetorgperson"))
        modules = f"modulepath {MODULES}\nmoduleload back_mdb\nmoduleload memberof\n" if MODULES.is_dir() else ""
        return f"""{schemas}{modules}pidfile {self.base_dir / "slapd.pid"}
argsfile {self.base_dir / "slapd.args"}
{tls}
database mdb
maxsize 67108864
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {self.root_password}
directory {self.base_dir / "data"}
overlay memberof

# Users bind; only the service account searches (as a directory that hides its people would have it).
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{SERVICE_DN}" read
    by * none
"""

    def _base_entries(self) -> str:
        entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"]
        for unit in ("people", "groups", "services"):
            entries.append(f"dn: ou={unit},{SUFFIX}\nobjectClass: organizationalUnit\nou: {unit}\n")
        entries.append(f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                       f"cn: registry\n" + _attribute("userPassword", self.service_password))
        return "\n".join(entries) + "\n"

    def __repr__(self) -> str:
        return f"<SlapdServer {self.url}>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
