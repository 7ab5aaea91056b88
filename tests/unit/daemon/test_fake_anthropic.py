"""The fake Messages API is strict: a request the real API refuses is refused here too."""
# ruff: noqa: S310 - every URL here is the loopback fake

from __future__ import annotations

import json
import urllib.error
import urllib.request

import anthropic
import pytest

from tests.fakes.anthropic import reply, text, tool_use
from tests.unit.daemon.conftest import KEY

TOOLS = [{"name": "t", "description": "d", "input_schema": {"type": "object", "properties": {}}}]


def _post(url, body, headers=None):
    h = {"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": KEY}
    h.update(headers or {})
    req = urllib.request.Request(url + "/v1/messages", json.dumps(body).encode(), h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


BASE = {"model": "m", "max_tokens": 10}


@pytest.mark.parametrize(
    ("messages", "why"),
    [
        ([{"role": "assistant", "content": "hi"}], "roles must alternate"),
        (
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            "roles must alternate",
        ),
        ([{"role": "user", "content": []}], "non-empty"),
        (
            [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "x1", "name": "t", "input": {}}],
                },
                {"role": "user", "content": "no result"},
            ],
            "without `tool_result`",
        ),
        (
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "ok"},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "zz", "content": "x"}],
                },
            ],
            "unexpected `tool_use_id`",
        ),
        (
            [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "x1", "name": "nope", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "x1", "content": "x"}],
                },
            ],
            "not declared",
        ),
    ],
)
def test_malformed_conversations_get_a_400_naming_the_problem(fake, messages, why) -> None:
    status, body = _post(fake.url, {**BASE, "tools": TOOLS, "messages": messages})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert why in body["error"]["message"]


def test_missing_model_or_max_tokens_is_refused(fake) -> None:
    assert (
        _post(fake.url, {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})[0] == 400
    )
    assert _post(fake.url, {"model": "m", "messages": [{"role": "user", "content": "x"}]})[0] == 400


def test_a_wrong_key_or_missing_version_header_is_refused(fake) -> None:
    ok = {**BASE, "messages": [{"role": "user", "content": "x"}]}
    status, body = _post(fake.url, ok, {"x-api-key": "wrong"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert _post(fake.url, ok, {"anthropic-version": ""})[0] == 400


def test_the_sdk_reads_replies_per_key_and_lists_models(fake) -> None:
    fake.set_keys([KEY, "other"])
    fake.script([reply(text("for other"))], key="other")
    fake.script([reply(tool_use("t", {"a": 1}), usage=(7, 3))], key=KEY)
    client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    m = client.messages.create(
        model="m", max_tokens=5, tools=TOOLS, messages=[{"role": "user", "content": "x"}]
    )
    assert m.stop_reason == "tool_use" and m.content[0].input == {"a": 1}
    assert (m.usage.input_tokens, m.usage.output_tokens) == (7, 3)
    assert fake.requests[-1]["key"] == KEY
    assert "claude-sonnet-4-6" in [x.id for x in client.models.list()]


def test_the_control_api_scripts_failures_over_http(fake) -> None:
    req = urllib.request.Request(
        fake.url + "/_control/fail", json.dumps({"status": 401}).encode(), method="POST"
    )
    urllib.request.urlopen(req, timeout=5).read()
    client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with urllib.request.urlopen(fake.url + "/_control/requests", timeout=5) as r:
        assert [x["status"] for x in json.loads(r.read())] == [401]


def test_a_route_answers_by_the_first_message_then_repeats_for_ever(fake) -> None:
    body = json.dumps(
        {
            "match": "task B",
            "replies": [reply(text("first"))],
            "then": reply(tool_use("t", {"again": True})),
        }
    ).encode()
    req = urllib.request.Request(fake.url + "/_control/route", body, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    fake.script([reply(text("unrouted"))])
    client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0)

    def ask(prompt: str):
        return client.messages.create(
            model="m", max_tokens=5, tools=TOOLS, messages=[{"role": "user", "content": prompt}]
        )

    assert ask("# task B\nbody").content[0].text == "first"
    assert ask("# task A").content[0].text == "unrouted"
    for _ in range(3):
        assert ask("# task B").content[0].input == {"again": True}
