"""Reaching the Hugging Face hub (rl-zoo agents, Minari datasets) without hanging when offline.

Offline, the hub client retries for about 30 s and logs every try. `hub_access` fails at
once in one line when the hub's host does not resolve, and keeps the client quiet while
it downloads, putting its log level back afterwards (other code may have set it).
"""

from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from policykd.errors import PolicykdError

HUB_HOST = "huggingface.co"  # where rl-zoo's sb3/ agents and Minari 0.5's remote datasets live


@contextmanager
def hub_access(offline: Callable[[str], str], *, check: bool = True) -> Iterator[None]:
    """Run the block's downloads quietly; first, with `check`, raise `PolicykdError(offline(reason))`
    when `HUB_HOST` does not resolve (`check=False` when the download goes elsewhere)."""
    if check:
        try:
            socket.getaddrinfo(HUB_HOST, 443)
        except OSError as err:
            raise PolicykdError(offline(f"{HUB_HOST} does not resolve: {err.strerror or err}")) from None
    hub_logger = logging.getLogger("huggingface_hub")  # the logger huggingface_hub's set_verbosity sets
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hub_logger.setLevel(level)
