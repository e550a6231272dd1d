"""Whether the ports a server is about to listen on are free: checked before the slow imports of a command, so
a port in use (another viewer or server left running) is said at once."""

from __future__ import annotations

import socket


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def viewer_ports(web_port: int, grpc_port: int) -> list[tuple[int, str, str]]:
    """``view --serve``'s ports: (port, its flag, the host it binds)."""
    return [(grpc_port, "--grpc-port", "127.0.0.1"), (web_port, "--web-port", "")]


def busy_port(ports: list[tuple[int, str, str]]) -> str | None:
    """For each ``(port, flag, host)``, the refusal of the first in use, or None when all are free."""
    for port, flag, host in ports:
        if not port_free(host, port):
            return (f"port {port} is in use (another `vla-data view --serve`?): pass {flag} with a free port, or "
                    "stop the other one")
    return None
