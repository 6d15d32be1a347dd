"""`mauto serve`: the application served by uvicorn on one address, against the project's store."""
from __future__ import annotations

import logging
import os
import sys

from mauto.config import Project
from mauto.errors import MautoError
from mauto.serve.app import ServeConfig, create_app
from mauto.store import runtime
from mauto.store.sqlite import Store


def serve_config(project: Project, store: Store) -> ServeConfig:
    """The server's configuration; MautoError when it cannot serve (no key to check links with)."""
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
    return ServeConfig(project, store.path, secret)


def serve(config: ServeConfig, host: str, port: int, forwarded_allow_ips: str = "127.0.0.1") -> None:
    """Serve until SIGTERM or Ctrl-C (uvicorn finishes the requests in hand, then the writer its jobs)."""
    import uvicorn

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("mauto.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # uvicorn's own access log would write the tokens of the paths; ours cuts them (app.Observed).
    uvicorn.run(create_app(config), host=host, port=port, access_log=False, log_level="warning",
                proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips, timeout_keep_alive=5,
                server_header=False, date_header=True, timeout_graceful_shutdown=10)
