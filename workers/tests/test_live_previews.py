"""Live previews: a node PUTs a small WebP of its current latents; the take keeps the latest
and the studio shows it on the take card while the take renders."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from conftest import client_for
from generation.models import Node, Take, TakeStatus
from generation.tests.helpers import NODE_TOKEN, fund, setup_catalog
from workers.backends.cog import prediction_id

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


def webp(color=(200, 40, 40), frames: int = 3) -> bytes:
    images = [Image.new("RGB", (40, 24), tuple(c // (i + 1) for c in color)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "WEBP", save_all=True, append_images=images[1:], duration=250)
    return buf.getvalue()


@pytest.fixture
def running(alice, acme):
    node = setup_catalog()
    fund(acme, 100)
    client = client_for(alice, acme)
    response = client.post(
        "/api/v1/takes/",
        {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 1,
         "idempotency_key": "live-1"},
    )  # fmt: skip
    take = Take.objects.get(pk=response.json()["takes"][0]["id"])
    Take.objects.filter(pk=take.pk).update(status=TakeStatus.RUNNING, node=node)
    return take, node, client


def put_preview(client, take_id, body: bytes, token: str = NODE_TOKEN, secret: str | None = None):
    """PUT as a node does: the prediction id carries the attempt's secret."""
    if secret is None:
        secret = Take.objects.get(pk=take_id).webhook_secret
    prediction = prediction_id(take_id, secret)
    return client.put(
        f"/ingest/{token}/{prediction}.preview.webp",
        data=body,
        content_type="image/webp",
        headers={"X-Prediction-ID": prediction},
    )


def test_latest_preview_is_kept_and_shown_on_the_take_card_while_it_renders(
    running, client, charlie, django_capture_on_commit_callbacks
):
    take, _, studio = running
    assert put_preview(client, take.pk, webp((200, 40, 40))).status_code == 204
    first = Take.objects.get(pk=take.pk).live_preview
    with django_capture_on_commit_callbacks(execute=True):
        assert put_preview(client, take.pk, webp((40, 200, 40))).status_code == 204
    take.refresh_from_db()
    assert take.live_preview != first and take.live_preview_at is not None
    assert not default_storage.exists(first)  # only the latest is kept
    with default_storage.open(take.live_preview) as fh:
        assert fh.read() == webp((40, 200, 40))
    grid = studio.get("/studio/takes/").content.decode()
    assert 'data-testid="live-preview"' in grid
    # An outsider never sees the take or its preview.
    assert str(take.pk) not in client_for(charlie).get("/studio/takes/").content.decode()
    # Once the take is done the card no longer shows it.
    Take.objects.filter(pk=take.pk).update(status=TakeStatus.CANCELED)
    assert 'data-testid="live-preview"' not in studio.get("/studio/takes/").content.decode()


def test_previews_from_another_node_a_wrong_token_or_a_finished_take_are_refused(running, client):
    take, node, _ = running
    other = Node.objects.create(
        name="other", pool=node.pool, base_url="http://127.0.0.1:9", auth_token="other-token"
    )
    assert put_preview(client, take.pk, webp(), token="other-token").status_code == 404
    assert put_preview(client, take.pk, webp(), token="wrong-token").status_code == 404
    assert put_preview(client, take.pk, webp(), secret="not-the-attempts").status_code == 404
    Take.objects.filter(pk=take.pk).update(node=other)
    assert put_preview(client, take.pk, webp()).status_code == 404
    Take.objects.filter(pk=take.pk).update(node=node, status=TakeStatus.SUCCEEDED)
    assert put_preview(client, take.pk, webp()).status_code == 404
    assert Take.objects.get(pk=take.pk).live_preview == ""


def test_a_preview_that_is_not_a_small_webp_is_refused_and_changes_nothing(running, client):
    take, _, _ = running
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    assert put_preview(client, take.pk, png.getvalue()).status_code == 415
    huge = b"RIFF\x00\x00\x00\x00WEBP" + b"\x00" * (600 * 1024)
    assert put_preview(client, take.pk, huge).status_code == 413
    assert Take.objects.get(pk=take.pk).live_preview == ""
