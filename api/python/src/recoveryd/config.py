"""Settings every client reads from the environment.

``RECOVERYD_ENDPOINTS``: comma-separated base URLs of the engine replicas
(default ``http://127.0.0.1:8080``); ``RECOVERYD_TOKEN``: the bearer token;
``RECOVERYD_CACERT``: a CA file for https:// replicas.
"""

from __future__ import annotations

import os
from typing import List

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


def endpoints_from_env() -> List[str]:
    raw = os.environ.get("RECOVERYD_ENDPOINTS", "").strip()
    return [e.strip() for e in raw.split(",") if e.strip()] if raw else [DEFAULT_ENDPOINT]
