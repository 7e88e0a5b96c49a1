"""The language-model client against the stand-in server, over real HTTP."""

import asyncio
import time

import pytest

from agents.llm import LLM, LLMError, LLMSpec

MESSAGES = [{"role": "user", "content": "Pick a number between 0 and 100."}]


def spec(*urls: str, **model) -> LLMSpec:
    endpoints = [{"url": url, "concurrency": model.pop("concurrency", 8)} for url in urls]
    return LLMSpec.model_validate({"models": {"m": {"endpoints": endpoints, **model}}})


async def calls(llm: LLM, count: int, **kwargs) -> list:
    pool = llm.model("m")
    return await asyncio.gather(
        *(pool.chat(MESSAGES, **kwargs) for _ in range(count)), return_exceptions=True
    )


async def test_answers_and_counts_tokens_exactly(llm_stub):
    llm = LLM(spec(llm_stub.url))
    try:
        replies = await calls(llm, 20)
    finally:
        await llm.close()
    assert all(r.text.isdigit() for r in replies)
    usage = llm.model("m").usage
    assert usage.calls == 20 == llm_stub.served.answered
    assert usage.prompt_tokens == llm_stub.served.prompt_tokens
    assert usage.completion_tokens == llm_stub.served.completion_tokens
    assert llm.take_usage() == {"m": usage.as_dict()}
    assert llm.take_usage() == {}


async def test_retries_429_500_and_malformed_answers_until_they_succeed(llm_stub):
    llm_stub.config.error_rate = 0.2
    llm_stub.config.malformed_rate = 0.2
    llm_stub.config.capacity = 5
    llm_stub.config.latency = 0.02  # calls overlap, so the capacity is reached
    llm = LLM(spec(llm_stub.url, concurrency=6, retries=20, failures_to_rest=1000, backoff=0.01))
    try:
        replies = await calls(llm, 60)
    finally:
        await llm.close()
    assert not [r for r in replies if isinstance(r, BaseException)]
    served = llm_stub.served
    assert served.errors
    assert served.malformed
    assert served.rejected
    assert llm.model("m").usage.calls == 60 == served.answered
    assert llm.model("m").usage.prompt_tokens == served.prompt_tokens


async def test_concurrency_per_endpoint_is_never_exceeded(llm_stub):
    llm_stub.config.latency = 0.05
    llm = LLM(spec(llm_stub.url, concurrency=7))
    try:
        await calls(llm, 50)
    finally:
        await llm.close()
    assert llm_stub.served.peak_in_flight == 7
    assert llm_stub.served.rejected == 0


async def test_a_hung_call_never_outlives_its_deadline(llm_stub):
    llm_stub.config.hang_rate = 1.0
    llm = LLM(spec(llm_stub.url, timeout=30))
    started = time.monotonic()
    try:
        with pytest.raises(LLMError, match="no answer"):
            await llm.model("m").chat(MESSAGES, deadline=time.monotonic() + 0.5)
    finally:
        await llm.close()
    assert time.monotonic() - started < 1.5
    assert llm.model("m").usage.failed == 1


async def test_a_failing_endpoint_is_set_aside_for_the_healthy_one(llm_stub, unused_tcp_port):
    dead = f"http://127.0.0.1:{unused_tcp_port}/v1"  # nothing listens there: connection refused
    llm = LLM(spec(dead, llm_stub.url, failures_to_rest=2, rest=60, retries=5))
    try:
        replies = await calls(llm, 40)
        first_dead_failures = llm.model("m").endpoints[0].failures
        resting = llm.model("m").endpoints[0].resting_until > time.monotonic()
    finally:
        await llm.close()
    assert not [r for r in replies if isinstance(r, BaseException)]
    assert resting
    assert first_dead_failures < 2  # counting again (calls already on their way may still fail)
    assert llm_stub.served.answered == 40


async def test_least_loaded_endpoint_first(llm_stub):
    llm_stub.config.latency = 0.1
    other = type(llm_stub)(type(llm_stub.config)(latency=0.1))
    await other.start()
    llm = LLM(spec(llm_stub.url, other.url, concurrency=10))
    try:
        await calls(llm, 20)
    finally:
        await llm.close()
        await other.stop()
    # Both take a share (a call that had to be retried may go to either).
    assert llm_stub.served.answered + other.served.answered == 20
    assert min(llm_stub.served.answered, other.served.answered) >= 7


async def test_the_key_comes_from_the_named_environment_variable(llm_stub, monkeypatch):
    monkeypatch.setenv("TEST_KEY_OF_A_MODEL", "sk-secret")
    llm = LLM(spec(llm_stub.url, api_key_env="TEST_KEY_OF_A_MODEL"))
    try:
        await calls(llm, 1)
    finally:
        await llm.close()
    assert llm_stub.served.authorizations == {"Bearer sk-secret"}
    assert "sk-secret" not in llm.spec.model_dump_json()


async def test_callers_wait_in_line_and_giving_up_frees_the_place(llm_stub):
    llm_stub.config.latency = 0.3
    llm = LLM(spec(llm_stub.url, concurrency=1))
    pool = llm.model("m")
    try:
        first = asyncio.ensure_future(pool.chat(MESSAGES))
        await asyncio.sleep(0.05)
        with pytest.raises(LLMError, match="busy or resting"):  # its place in line outlives its deadline
            await pool.chat(MESSAGES, deadline=time.monotonic() + 0.1)
        cancelled = asyncio.ensure_future(pool.chat(MESSAGES))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        assert (await first).text.isdigit()
        assert (await pool.chat(MESSAGES, deadline=time.monotonic() + 2)).text.isdigit()
        assert pool.endpoints[0].in_flight == 0  # no slot was lost on the way
    finally:
        await llm.close()
    assert llm_stub.served.answered == 2
