"""nginx as a round-robin load balancer in front of several registry processes, on loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path


from tests.support.process import terminate, wait_until_answers
from tests.support.server import free_port

CONFIG = """
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {root}/access.log upstreams;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    upstream registry {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://registry;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
            proxy_read_timeout 900s;
            proxy_send_timeout 900s;
        }}
    }}
}}
"""


class NginxBalancer:
    def __init__(self, root: Path, upstreams: list[str], port: int | None = None) -> None:
        self.root = Path(root)
        self.upstreams = upstreams
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> NginxBalancer:
        self.root.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server {upstream};" for upstream in self.upstreams)
        conf = self.root / "nginx.conf"
        conf.write_text(CONFIG.format(root=self.root, servers=servers, port=self.port))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.root), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr.log", "wb"))
        wait_until_answers(self.proc, f"http://{self.host}/v2/", lambda status: status == 200, timeout,
                           "nginx (apt-get install -y nginx-light)", self._stderr, self.stop)
        return self

    def _stderr(self) -> str:
        return (self.root / "stderr.log").read_text(errors="replace")

    def upstream_hits(self) -> dict[str, int]:
        """Requests each upstream answered, from the access log.

        Lines without an upstream ("-") are requests nginx answered itself, such as Docker's
        TLS probe before it falls back to plain HTTP.
        """
        hits: dict[str, int] = {}
        for line in (self.root / "access.log").read_text().splitlines():
            upstream = line.rsplit(" ", 1)[-1]
            if upstream != "-":
                hits[upstream] = hits.get(upstream, 0) + 1
        return hits

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self) -> NginxBalancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
