"""`mauto serve`: the application served by uvicorn on one address, against the project's store."""
from __future__ import annotations

import logging
import os
import socket
import sys

from mauto.config import Project
from mauto.errors import MautoError, UsageError
from mauto.serve.app import ServeConfig, create_app
from mauto.store import runtime
from mauto.store.postgres import PgStore
from mauto.store.sqlite import Store


def serve_config(project: Project, store: Store) -> ServeConfig:
    """The server's configuration, for the store `store` is open on (a SQLite file or a PostgreSQL database: its
    writer opens a connection of its own there); MautoError when it cannot serve (no key to check links with)."""
    with store.guard():
        secret = runtime.signing_secret(store.db, os.environ, project.data.get("unsubscribe_secret_env"))
    if secret is None:
        name = project.data.get("unsubscribe_secret_env")
        where = f"set the environment variable {name}, or " if name else ""
        raise MautoError(f"no key to check links with: {where}run `mauto db init` to make one and keep it in the "
                         "store (the daemon signs the links with the same key)", store.shown)
    if not project.serve.public_url:
        logging.getLogger("mauto.serve").warning(
            "serve.public_url is not set in mauto.yaml: messages carry no links to this server")
    return ServeConfig(project, store.url if isinstance(store, PgStore) else store.path, secret)


MAX_CONNECTIONS = 1000  # past this, uvicorn answers 503 at once: slow clients cannot take every socket


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: an address in use is a MautoError naming it, before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise UsageError(f"--host {host}: {getattr(error, 'strerror', None) or error}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def serve(config: ServeConfig, sock: socket.socket, forwarded_allow_ips: str = "127.0.0.1",
          access_log: bool = False) -> None:
    """Serve on `sock` until SIGTERM or Ctrl-C (uvicorn finishes the requests in hand, then the writer its
    jobs)."""
    import uvicorn

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("mauto.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if access_log else logging.INFO)
    logger.propagate = False
    # uvicorn's own access log would write the tokens of the paths; ours cuts them (app.Observed).
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), access_log=False, log_level="warning", proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips, timeout_keep_alive=5, server_header=False, date_header=True,
        timeout_graceful_shutdown=10, limit_concurrency=MAX_CONNECTIONS))
    server.run(sockets=[sock])
    if not server.started:  # the application could not start (its store): uvicorn said why on stderr
        raise MautoError("mauto serve could not start (see the lines above)")
