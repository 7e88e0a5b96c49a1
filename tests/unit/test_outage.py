"""Riding out outages: which faults are waited out, for how long, and what is reported."""

import asyncio

import pytest
import redis.exceptions
from sqlalchemy import exc as sa_exc

from backend.workflow.outage import LIVE, STORE, Outage, Unavailable, patiently, transient


class _Lost(Exception):
    sqlstate = "57P01"  # a terminated backend, as asyncpg reports it


def test_faults_that_pass_are_told_from_those_that_do_not():
    assert transient(redis.exceptions.ConnectionError("refused")) == LIVE
    assert transient(redis.exceptions.BusyLoadingError("loading")) == LIVE
    assert transient(sa_exc.DBAPIError("select 1", {}, _Lost("terminated"))) == STORE
    assert transient(ConnectionRefusedError()) == STORE
    assert transient(sa_exc.OperationalError("insert", {}, Exception("database is locked"))) == STORE
    assert transient(sa_exc.OperationalError("select", {}, Exception("no such table: runs"))) is None
    assert transient(sa_exc.IntegrityError("insert", {}, Exception("duplicate key"))) is None
    assert transient(ValueError("a bug")) is None


async def test_a_call_is_tried_again_until_the_service_is_back_and_the_outage_is_reported():
    tries, heard = [], []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 4:
            raise redis.exceptions.ConnectionError("Connection refused")
        return "done"

    assert await patiently(flaky, {LIVE: 10, STORE: 0}, heard.append) == "done"
    assert len(tries) == 4
    assert [o.service for o in heard] == [LIVE]
    assert isinstance(heard[0], Outage)
    assert heard[0].seconds > 0


async def test_past_its_bound_an_outage_is_unavailable():
    async def down() -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    started = asyncio.get_running_loop().time()
    with pytest.raises(Unavailable, match="the live layer was unreachable") as raised:
        await patiently(down, {LIVE: 0.5, STORE: 60})
    assert raised.value.service == LIVE
    assert 0.5 <= asyncio.get_running_loop().time() - started < 5


async def test_other_errors_are_raised_at_once():
    tries = []

    async def broken() -> None:
        tries.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await patiently(broken, {LIVE: 60, STORE: 60})
    assert tries == [1]
