"""Fixtures shared by the hub tests (helpers live in hubtools.py, beside this file)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from hubtools import running_hub
from transport.hub import Hub


@pytest.fixture
async def hub(tmp_path) -> AsyncIterator[Hub]:
    """The small Contoso of hubtools.base_config, in process, on an ephemeral port, no agents, no TLS."""
    async with running_hub(tmp_path) as h:
        yield h


@pytest.fixture
def port(hub: Hub) -> int:
    return hub.addresses[0][1]
