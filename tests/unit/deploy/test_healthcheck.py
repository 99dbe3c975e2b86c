"""The image's HEALTHCHECK (gateway/healthcheck.py): it finds the role a container runs from its processes,
and probes that role's port; roles without a port are healthy while they run."""

from __future__ import annotations

import http.server
import threading

import pytest

from gateway import healthcheck


def fake_proc(tmp_path, *argvs: list[str]):
    for pid, argv in enumerate(argvs, start=1):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("argvs", "expected"),
    [
        ([["/opt/gateway/bin/python3", "/opt/gateway/bin/litellm", "--config", "/app/litellm_config.yaml"]], "proxy"),
        ([["/opt/gateway/bin/python3", "-m", "gateway.proxy.launch", "--config", "/etc/gateway/c.yaml"]], "proxy"),
        (
            [
                ["/sbin/catatonit", "--", "gateway", "sidecar"],
                ["/opt/gateway/bin/python", "/opt/gateway/bin/gateway", "sidecar"],
            ],
            "sidecar",
        ),
        ([["python", "-m", "gateway", "sidecar"]], "sidecar"),
        ([["/opt/gateway/bin/python", "/opt/gateway/bin/gateway", "sweep"]], None),
        ([["/opt/gateway/bin/python", "/opt/gateway/bin/gateway", "watch"]], None),
        ([["/opt/gateway/bin/python", "/opt/gateway/bin/gateway", "keys", "create", "--label", "sidecar"]], None),
    ],
)
def test_role_is_read_from_the_containers_processes(tmp_path, argvs, expected):
    assert healthcheck.role(fake_proc(tmp_path, *argvs)) == expected


@pytest.fixture
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_GET(self):
            self.send_response(Handler.status if self.path == "/health/liveliness" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd, Handler
    httpd.shutdown()


def test_a_proxy_is_healthy_only_while_it_answers(server, monkeypatch, capsys):
    httpd, handler = server
    monkeypatch.setattr(healthcheck, "role", lambda: "proxy")
    monkeypatch.setenv("PROXY_PORT", str(httpd.server_address[1]))
    assert healthcheck.main() == 0
    handler.status = 503
    assert healthcheck.main() == 1 and "HTTP Error 503" in capsys.readouterr().out
    httpd.shutdown()
    httpd.server_close()
    assert healthcheck.main() == 1 and "unhealthy" in capsys.readouterr().out


def test_roles_without_a_port_are_healthy_while_they_run(monkeypatch):
    monkeypatch.setattr(healthcheck, "role", lambda: None)
    assert healthcheck.main() == 0
