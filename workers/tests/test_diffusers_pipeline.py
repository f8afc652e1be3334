"""End to end on a real open-model pipeline: a take dispatched by a real Celery worker to a
tiny diffusers node (the real Cog server running WanPipeline with small random weights),
its live previews stored and shown on the studio's take card while it renders, then the
video stored, probed and the hold settled for the measured seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from django.core.files.storage import default_storage

from billing.models import Hold, HoldStatus
from conftest import client_for
from generation.models import Take, TakeStatus
from generation.tests.helpers import NODE_TOKEN, fund, setup_catalog, wallet
from workers import media

from .conftest import stop_node
from .diffusers_node import start_diffusers_nodes
from .live import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_in_tmp(shared_media):
    """Media in one folder shared with the worker subprocesses."""


@pytest.fixture(scope="module")
def wan_node(live_server) -> Iterator[str]:
    upload = f"{live_server.url}/ingest/{NODE_TOKEN}/"
    started = start_diffusers_nodes(("wan2.1-t2v-1.3b",), upload_url=upload)
    [(url, proc)] = started.values()
    yield url
    stop_node(proc)


def test_take_on_a_diffusers_node_shows_live_previews_then_is_stored_probed_and_settled(
    alice, acme, charlie, wan_node, workers, settings, live_server
):
    settings.PUBLIC_BASE_URL = live_server.url
    node = setup_catalog(base_url=wan_node)
    # Enough steps that the studio sees the draw develop; a preview after every step.
    node.extra_input = {"steps": 8}
    node.save(update_fields=["extra_input"])
    fund(acme, 100)
    workers.start()
    client = client_for(alice, acme)
    response = client.post(
        "/api/v1/takes/",
        {
            "model": "wan2.1-t2v-1.3b",
            "prompt": "a paper boat drifting down a rainy street",
            "resolution": "480p",
            "duration": 1,
            "idempotency_key": f"diffusers-{time.monotonic_ns()}",
        },
    )
    assert response.status_code == 201, response.json()
    take_id = response.json()["takes"][0]["id"]

    # While it renders, the take card shows the node's latest preview.
    seen: list[str] = []

    def card_shows_preview() -> bool:
        take = Take.objects.get(pk=take_id)
        assert take.status not in (TakeStatus.FAILED, TakeStatus.CANCELED), take.error
        if take.status != TakeStatus.RUNNING or not take.live_preview:
            return False
        html = client.get("/studio/takes/").content.decode()
        if 'data-testid="live-preview"' not in html:
            return False
        seen.append(html.split('data-testid="live-preview"')[0].rsplit('src="', 1)[1].split('"')[0])
        return True

    wait_until(card_shows_preview, timeout=240, step=0.2)
    preview = httpx.get(seen[0].replace("&amp;", "&"), timeout=10)
    assert preview.status_code == 200
    assert preview.content[:4] == b"RIFF" and preview.content[8:12] == b"WEBP"
    # Another workspace never sees it.
    assert take_id not in client_for(charlie).get("/studio/takes/").content.decode()

    wait_until(
        lambda: Take.objects.get(pk=take_id).status in (TakeStatus.SUCCEEDED, TakeStatus.FAILED),
        timeout=240,
    )
    take = Take.objects.get(pk=take_id)
    assert take.status == TakeStatus.SUCCEEDED, take.error
    # The size the catalog picked for Wan (832x480, not 854x480) is what the node made.
    info = media.probe(default_storage.path(take.output_original))
    assert (info.codec, info.width, info.height) == ("h264", 832, 480)
    assert abs(info.duration_seconds - 1) < 0.05
    assert (take.measured_width, take.measured_height) == (832, 480)
    # 1 s at 480p is 2 credits, charged once; nothing stays held.
    hold = Hold.objects.get(pk=take.hold_id)
    assert hold.status == HoldStatus.SETTLED and take.charged == 2
    assert (wallet(acme).balance, wallet(acme).held) == (98, 0)
    # Done: the card plays the video, the live preview is gone from it.
    html = client.get("/studio/takes/").content.decode()
    assert 'data-testid="live-preview"' not in html
