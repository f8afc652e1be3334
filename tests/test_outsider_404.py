"""Walk every URL pattern that takes an object id, slug or token, and prove that charlie,
a signed-in user of another workspace, gets 404 for alice's objects.

New patterns are picked up automatically; a pattern whose parameter has no factory below
fails the walk, so adding a URL means adding the object it points at here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import actions
from accounts.models import Membership
from conftest import client_for, make_user

# Staff-only or authentication-key URLs are not tenant objects. Node callbacks (webhooks,
# ingest) authenticate by a per-take secret or node token in the path, not a session.
EXCLUDED_PREFIXES = ("admin/", "accounts/", "i18n/", "static/", "media/", "webhooks/", "ingest/")
PARAM = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


@dataclass
class World:
    alice: object
    acme: object
    bob: object
    charlie: object


def _bob_membership(world: World) -> int:
    return Membership.objects.get(workspace=world.acme, user=world.bob).pk


def _open_invitation(world: World) -> int:
    from generation.tests.helpers import subscribe

    subscribe(world.acme, "studio")  # seats to invite into
    return actions.invite_member(
        world.acme, "dana@example.com", "member", acting_user=world.alice
    ).pk


def _invitation_for_alice(world: World) -> str:
    owner = make_user("olga@example.com")
    other = actions.create_workspace(owner, "Other team")
    from generation.tests.helpers import subscribe

    subscribe(other, "studio")
    return actions.invite_member(other, world.alice.email, "member", acting_user=owner).token


def _alice_take(world: World) -> str:
    from unittest import mock

    from generation.submission import TakeSpec, submit_takes
    from generation.tests.helpers import fund, setup_catalog

    setup_catalog()
    fund(world.acme, 100)
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=1)
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        [take] = submit_takes(world.acme, world.alice, spec, idempotency_key="walk")
    return str(take.pk)


def _alice_project(world: World) -> int:
    from generation.submission import inbox_for

    return inbox_for(world.acme).pk


def _alice_shot(world: World) -> int:
    from generation.models import Take

    return Take.objects.get(pk=_alice_take(world)).shot_id


def _alice_video(world: World) -> str:
    return "video_" + _alice_take(world).replace("-", "")


def _alice_webhook_endpoint(world: World):
    from api.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(
        workspace=world.acme, url="https://example.com/hook", event_types=["take.succeeded"]
    )


def _alice_endpoint_id(world: World) -> int:
    return _alice_webhook_endpoint(world).pk


def _alice_delivery(world: World) -> str:
    from api.models import WebhookDelivery

    return WebhookDelivery.objects.create(
        endpoint=_alice_webhook_endpoint(world),
        message_id="msg_walk",
        event_type="take.succeeded",
        payload={"type": "take.succeeded"},
    ).pk


def _alice_api_key(world: World) -> int:
    from accounts.models import ApiKey

    return ApiKey.objects.create(
        workspace=world.acme, name="walk", prefix="walk00000000", key_hash="x" * 64
    ).pk


def _alice_rough_cut(world: World) -> str:
    from generation.models import RoughCut, RoughCutStatus
    from generation.submission import inbox_for

    cut = RoughCut.objects.create(
        workspace=world.acme,
        project=inbox_for(world.acme),
        status=RoughCutStatus.SUCCEEDED,
        output_video="rough-cuts/walk/rough-cut.mp4",
        output_timeline="rough-cuts/walk/rough-cut.otio",
        output_edl="rough-cuts/walk/rough-cut.edl",
        output_fcp_xml="rough-cuts/walk/rough-cut.xml",
    )
    return str(cut.pk)


OBJECT_FACTORIES: dict[str, Callable[[World], object]] = {
    "workspace_id": lambda world: world.acme.pk,
    "membership_id": _bob_membership,
    "invitation_id": _open_invitation,
    "token": _invitation_for_alice,
    "take_id": _alice_take,
    "project_id": _alice_project,
    "shot_id": _alice_shot,
    "video_id": _alice_video,
    "endpoint_id": _alice_endpoint_id,
    "delivery_id": _alice_delivery,
    "key_id": _alice_api_key,
    "rough_cut_id": _alice_rough_cut,
    "kind": lambda world: "video",
}


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry, route)
        elif isinstance(entry, URLPattern) and PARAM.search(route):
            yield route


ROUTES = sorted(
    {
        route.lstrip("^")
        for route in _walk(get_resolver())
        if not route.lstrip("^").startswith(EXCLUDED_PREFIXES)
    }
)


def test_the_walk_finds_the_parameterised_routes():
    assert "workspaces/<int:workspace_id>/switch/" in ROUTES
    assert len(ROUTES) >= 5


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES)
def test_outsider_gets_404_for_every_object_url(route, alice, acme, bob, charlie):
    world = World(alice=alice, acme=acme, bob=bob, charlie=charlie)
    names = [m.group("name") for m in PARAM.finditer(route)]
    missing = [name for name in names if name not in OBJECT_FACTORIES]
    assert not missing, f"{route}: add a factory for {missing} to OBJECT_FACTORIES"
    values = {name: OBJECT_FACTORIES[name](world) for name in names}
    path = "/" + PARAM.sub(lambda m: str(values[m.group("name")]), route)

    # A method the view does not take answers 405 whatever the id: that reveals nothing.
    outsider = client_for(charlie)
    statuses = {"GET": outsider.get(path).status_code, "POST": outsider.post(path).status_code}
    assert set(statuses.values()) <= {404, 405}, f"{path} leaked to an outsider: {statuses}"
    assert 404 in statuses.values(), f"{path}: no method reached the object lookup"

    insider = client_for(alice, acme)
    statuses = {insider.get(path).status_code, insider.post(path).status_code}
    assert statuses != {404}, f"{path} is a 404 for its owner too: the walk proves nothing"


# --- media: no path is served, links are opaque, expire and cannot be forged -------------


@pytest.fixture
def alice_file(alice, acme) -> str:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    take_id = _alice_take(World(alice=alice, acme=acme, bob=None, charlie=None))
    return default_storage.save(f"takes/{take_id}/original.mp4", ContentFile(b"alice's video"))


def _link_path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["original.mp4", "video.mp4", "poster.jpg", "preview.mp4"])
def test_no_media_path_serves_a_file_to_anyone(alice_file, charlie, client, kind):
    folder = alice_file.rsplit("/", 1)[0]
    for path in (f"/media/{alice_file}", f"/media/{folder}/{kind}"):
        assert client.get(path).status_code == 404, path
        assert client_for(charlie).get(path).status_code == 404, path


@pytest.mark.django_db
def test_signed_links_expired_tampered_or_foreign_serve_nothing(alice_file, charlie, client):
    import time_machine

    from config.media_links import signed_media_url

    with time_machine.travel("2026-03-01 12:00:00Z", tick=False) as clock:
        good = _link_path(signed_media_url(alice_file, ttl=60))
        assert client.get(good).status_code == 200
        clock.shift(61)
        expired = client_for(charlie).get(good)
        assert expired.status_code == 403 and b"expired" in expired.content
    token = good.rstrip("/").rsplit("/", 1)[1]
    for forged in (
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        token[:40],
        token + "x",
        "not-a-token",
    ):
        response = client_for(charlie).get(f"/media/signed/{forged}/")
        assert response.status_code == 403, forged
        assert b"alice's video" not in response.content
    # A link is minted only for a take of the session's workspace: charlie gets none.
    take_id = alice_file.split("/")[1]
    assert client_for(charlie).get(f"/takes/{take_id}/download/").status_code == 404
    assert client_for(charlie).get(f"/api/v1/takes/{take_id}/").status_code == 404
