"""The Cog client against the real reference node (and a failing stand-in for 5xx)."""

from __future__ import annotations

import base64
import uuid

import pytest

from workers.backends import (
    NodeAtCapacity,
    PermanentBackendError,
    TransientBackendError,
)
from workers.backends.cog import CogClient, decode_output, parse_progress
from workers.tests.conftest import free_port, wait_ready

QUICK = {"prompt": "a quiet harbour", "width": 128, "height": 72, "fps": 8, "seconds": 1.0}
SLOW = {**QUICK, "seconds": 10.0, "speed": 2.0}


def take_id() -> str:
    return f"take-{uuid.uuid4().hex[:12]}"


def test_submit_returns_at_once_and_the_outcome_arrives_by_webhook(idle_node, catcher):
    client = CogClient(idle_node)
    prediction = take_id()

    state = client.submit(prediction, QUICK, f"{catcher.url}/hooks/{prediction}")

    assert state["id"] == prediction
    assert state["status"] == "processing"
    done = catcher.completed(prediction)
    assert done["status"] == "succeeded"
    assert done["output"].endswith(f"/ingest/{prediction}.mp4")
    assert parse_progress(done["logs"]) == 100


def test_events_filter_limits_webhooks_to_completed(idle_node, catcher):
    client = CogClient(idle_node)
    prediction = take_id()

    client.submit(prediction, QUICK, f"{catcher.url}/hooks/{prediction}", events=["completed"])

    catcher.completed(prediction)
    assert [h["status"] for h in catcher.webhooks(prediction)] == ["succeeded"]


def test_full_node_raises_node_at_capacity_and_poll_returns_running_state(idle_node, catcher):
    client = CogClient(idle_node)
    running, refused = take_id(), take_id()
    client.submit(running, SLOW, f"{catcher.url}/hooks/{running}")
    try:
        assert client.health() == "BUSY"
        with pytest.raises(NodeAtCapacity):
            client.submit(refused, QUICK, f"{catcher.url}/hooks/{refused}")

        state = client.poll(running, SLOW, f"{catcher.url}/hooks/{running}")
        assert state["id"] == running and state["status"] == "processing"
    finally:
        assert client.cancel(running) is True
    assert catcher.completed(running)["status"] == "canceled"
    assert catcher.webhooks(refused) == []


def test_cancel_stops_a_running_prediction_and_frees_the_node(idle_node, catcher):
    client = CogClient(idle_node)
    prediction = take_id()
    client.submit(prediction, SLOW, f"{catcher.url}/hooks/{prediction}")
    catcher.wait_for(lambda: parse_progress(catcher.webhooks(prediction)[-1]["logs"]) is not None)

    assert client.cancel(prediction) is True

    done = catcher.completed(prediction)
    assert done["status"] == "canceled"
    assert catcher.uploads(prediction) == []
    assert parse_progress(done["logs"]) < 100
    wait_ready(idle_node, timeout=2)


def test_cancel_of_an_unknown_prediction_returns_false(idle_node):
    assert CogClient(idle_node).cancel(take_id()) is False


def test_health_reports_ready_when_idle(idle_node):
    assert CogClient(idle_node).health() == "READY"


def test_invalid_input_raises_permanent_error_naming_the_field(idle_node, catcher):
    client = CogClient(idle_node)

    with pytest.raises(PermanentBackendError, match="width") as refused:
        client.submit(take_id(), {**QUICK, "width": "wide"}, f"{catcher.url}/hooks/x")
    # The message is shown to the creator on the failed take: no internal addresses.
    assert idle_node not in str(refused.value)


def test_unreachable_node_raises_transient_error():
    client = CogClient(f"http://127.0.0.1:{free_port()}", timeout=2)

    with pytest.raises(TransientBackendError, match="unreachable"):
        client.health()
    with pytest.raises(TransientBackendError):
        client.submit(take_id(), QUICK, "http://127.0.0.1:1/hook")


def test_server_error_is_transient_and_the_token_is_sent(catcher):
    client = CogClient(catcher.url, token="node-secret")

    with pytest.raises(TransientBackendError, match="503") as caught:
        client.health()

    assert not isinstance(caught.value, NodeAtCapacity)
    last = [r for r in catcher.requests if r.method == "GET"][-1]
    assert last.headers["authorization"] == "Bearer node-secret"


def test_parse_progress_takes_the_latest_percent():
    assert parse_progress("") is None
    assert parse_progress("rendering 128x72\n") is None
    assert parse_progress("progress: 5%\nprogress: 42%\nsome line\n") == 42
    assert parse_progress("progress: 100%\n") == 100


def test_decode_output_reads_data_urls_and_leaves_http_urls_to_the_caller():
    payload = b"\x00\x00\x00\x20ftypisom"
    data_url = "data:video/mp4;base64," + base64.b64encode(payload).decode()

    assert decode_output(data_url) == payload
    assert decode_output("https://cdn.example.com/out.mp4") is None
    with pytest.raises(PermanentBackendError):
        decode_output("/tmp/output.mp4")
    with pytest.raises(PermanentBackendError):
        decode_output("data:video/mp4;base64,@@not-base64@@")
    with pytest.raises(PermanentBackendError):
        decode_output(None)
