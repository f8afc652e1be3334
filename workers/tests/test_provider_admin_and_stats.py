"""Provider configuration in admin (credentials write-only, encrypted at rest), the
credential sources, and the operations figures per provider."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from conftest import client_for, make_user
from generation.models import Node, Route, RouteKind, Take, VideoModel
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog
from workers import credentials
from workers.models import JobStatus, Provider, ProviderJob
from workers.reporting import node_stats, percentile, provider_stats

pytestmark = pytest.mark.django_db
PLAINTEXT = "r8_live_0123456789abcdefSECRET"


@pytest.fixture
def staff(db):
    user = make_user("ops@example.com")
    user.is_staff = user.is_superuser = True
    user.save()
    return client_for(user)


def provider_form(**fields) -> dict:
    data = {
        "name": "Replicate",
        "slug": "replicate",
        "kind": "replicate",
        "base_url": "",
        "api_key_env": "",
        "secret_env": "",
        "max_concurrency": 3,
        "cost_per_clip": "0",
        "cost_per_second": "0.8",
        "is_active": "on",
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
        "routes-MIN_NUM_FORMS": "0",
        "routes-MAX_NUM_FORMS": "1000",
    }
    data.update(fields)
    return data


def test_admin_stores_credentials_encrypted_and_never_shows_them_again(staff, alice, charlie):
    setup_catalog()
    model = VideoModel.objects.get(slug="wan2.1-t2v-1.3b")
    response = staff.post(
        "/admin/workers/provider/add/",
        provider_form(
            api_key=PLAINTEXT,
            secret="whsec_c2VjcmV0",
            **{
                "routes-TOTAL_FORMS": "1",
                "routes-0-video_model": model.pk,
                "routes-0-provider_model": "wan-video/wan-2.1-t2v-480p",
                "routes-0-priority": "50",
                "routes-0-extra_input": "{}",
                "routes-0-is_active": "on",
            },
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    provider = Provider.objects.get(slug="replicate")
    assert PLAINTEXT not in provider.api_key_encrypted
    assert provider.api_key() == PLAINTEXT and provider.secret() == "whsec_c2VjcmV0"
    [route] = Route.objects.filter(provider=provider)
    assert (route.kind, route.pool_id, route.priority) == (RouteKind.PROVIDER, None, 50)

    page = staff.get(f"/admin/workers/provider/{provider.pk}/change/").content.decode()
    assert PLAINTEXT not in page and provider.api_key_encrypted not in page
    listing = staff.get("/admin/workers/provider/").content.decode()
    assert "stored (encrypted)" in listing and PLAINTEXT not in listing

    # Saving again with the fields left empty keeps the stored credentials.
    again = provider_form(
        **{
            "routes-TOTAL_FORMS": "1",
            "routes-INITIAL_FORMS": "1",
            "routes-0-id": route.pk,
            "routes-0-provider": provider.pk,
            "routes-0-video_model": model.pk,
            "routes-0-provider_model": "wan-video/wan-2.1-t2v-480p",
            "routes-0-priority": "60",
            "routes-0-extra_input": "{}",
            "routes-0-is_active": "on",
        }
    )
    assert staff.post(f"/admin/workers/provider/{provider.pk}/change/", again).status_code == 302
    provider.refresh_from_db()
    assert provider.api_key() == PLAINTEXT
    assert Route.objects.get(pk=route.pk).priority == 60

    # Members and outsiders do not reach provider admin at all.
    for user in (alice, charlie):
        page = client_for(user).get("/admin/workers/provider/")
        assert page.status_code == 302 and "/admin/login/" in page["Location"]


def test_kling_without_a_secret_key_is_refused_and_nothing_is_saved(staff):
    response = staff.post(
        "/admin/workers/provider/add/",
        provider_form(name="Kling", slug="kling", kind="kling", api_key="ak-123"),
    )
    assert response.status_code == 200
    assert "Kling needs the secret key" in response.content.decode()
    assert not Provider.objects.exists()


def test_forgetting_stored_credentials_and_reading_them_from_the_environment(staff, monkeypatch):
    provider = Provider.objects.create(
        name="Runway", slug="runway", kind="runway", api_key_encrypted=credentials.encrypt("k")
    )
    response = staff.post(
        f"/admin/workers/provider/{provider.pk}/change/",
        provider_form(
            name="Runway",
            slug="runway",
            kind="runway",
            api_key_env="RUNWAY_API_KEY",
            forget_stored="on",
        ),
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""
    with pytest.raises(credentials.CredentialError):
        provider.api_key()
    monkeypatch.setenv("RUNWAY_API_KEY", "from-the-environment")
    assert provider.api_key() == "from-the-environment"
    assert "environment: RUNWAY_API_KEY" in staff.get("/admin/workers/provider/").content.decode()


def test_stored_credentials_need_the_key_they_were_encrypted_with(settings):
    stored = credentials.encrypt("secret")
    assert credentials.decrypt(stored) == "secret"
    settings.PROVIDER_CREDENTIALS_KEY = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
    with pytest.raises(credentials.CredentialError):
        credentials.decrypt(stored)
    assert credentials.decrypt(credentials.encrypt("secret")) == "secret"


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (10.0, 19.0)


def test_provider_stats_report_success_latency_and_cost_against_credits(alice, acme):
    setup_catalog()
    fund(acme, 1000)
    fast = Provider.objects.create(name="Fal", slug="fal", kind="fal")
    slow = Provider.objects.create(name="Kling", slug="kling", kind="kling")
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="tide pools", resolution="480p", duration=2)
    takes = [submit_takes(acme, alice, spec, idempotency_key=f"stats-{i}")[0] for i in range(6)]
    now = timezone.now()
    start = now - timedelta(minutes=30)

    def job(take, provider, status, seconds, cost="0", charged=0, attempt=1):
        Take.objects.filter(pk=take.pk).update(charged=charged)
        ProviderJob.objects.create(
            take=take,
            provider=provider,
            attempt=attempt,
            status=status,
            cost=Decimal(cost),
            submitted_at=start,
            finished_at=start + timedelta(seconds=seconds),
        )

    job(takes[0], fast, JobStatus.SUCCEEDED, 20, "2.5", charged=4)
    job(takes[1], fast, JobStatus.SUCCEEDED, 40, "2.5", charged=4)
    job(takes[2], fast, JobStatus.FAILED_OVER, 1)
    job(takes[2], slow, JobStatus.SUCCEEDED, 300, "5", charged=4, attempt=2)
    job(takes[3], slow, JobStatus.BLOCKED, 5)
    job(takes[4], slow, JobStatus.CANCELED, 5)  # a user's cancel is not the provider's fault
    old = ProviderJob.objects.create(
        take=takes[5], provider=fast, attempt=1, status=JobStatus.FAILED,
        submitted_at=now - timedelta(days=3),
    )  # fmt: skip

    rows = {row.provider.slug: row for row in provider_stats(now - timedelta(days=1))}
    assert set(rows) == {"fal", "kling"}
    fal, kling = rows["fal"], rows["kling"]
    assert (fal.jobs, fal.succeeded, fal.failed_over, fal.failed) == (3, 2, 1, 0)
    assert fal.success_rate == pytest.approx(2 / 3)
    assert (fal.p50_seconds, fal.p95_seconds) == (20.0, 40.0)
    assert (fal.cost, fal.credits_charged, fal.margin) == (Decimal("5"), 8, Decimal("3"))
    assert (kling.jobs, kling.succeeded, kling.blocked) == (2, 1, 1)
    assert kling.success_rate == 0.5 and kling.p95_seconds == 300.0
    assert (kling.cost, kling.credits_charged) == (Decimal("5"), 4)
    assert old.provider_id == fast.pk and fal.failed == 0

    html = render_to_string("ops/_providers.html", {"provider_stats": list(rows.values())})
    assert "67%" in html and "20.0 s" in html and "300.0 s" in html
    empty = render_to_string("ops/_providers.html", {"provider_stats": []})
    assert "No provider jobs in this period." in empty


def test_node_attempts_are_reported_per_node_like_providers(alice, acme):
    """Attempts on GPU nodes are recorded like provider jobs; the ops page has per-node
    figures (success rate, time to result, GPU cost against credits charged)."""
    node = setup_catalog()
    other = Node.objects.create(name="gpu-2", pool=node.pool, base_url="http://127.0.0.1:9")
    fund(acme, 1000)
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="tide pools", resolution="480p", duration=2)
    takes = [submit_takes(acme, alice, spec, idempotency_key=f"node-{i}")[0] for i in range(3)]
    start = timezone.now() - timedelta(minutes=30)
    for take, target, status, seconds, attempt in [
        (takes[0], node, JobStatus.SUCCEEDED, 12, 1),
        (takes[1], node, JobStatus.FAILED_OVER, 120, 1),
        (takes[1], other, JobStatus.SUCCEEDED, 30, 2),
        (takes[2], other, JobStatus.FAILED, 3, 1),
    ]:
        ProviderJob.objects.create(
            take=take,
            node=target,
            attempt=attempt,
            status=status,
            cost=Decimal("0.5") * seconds if status == JobStatus.SUCCEEDED else 0,
            submitted_at=start,
            finished_at=start + timedelta(seconds=seconds),
        )
    Take.objects.filter(pk__in=[takes[0].pk, takes[1].pk]).update(charged=4)
    assert provider_stats(start - timedelta(minutes=1)) == []
    rows = {row.provider.name: row for row in node_stats(start - timedelta(minutes=1))}
    first, second = rows[node.name], rows["gpu-2"]
    assert (first.jobs, first.succeeded, first.failed_over, first.success_rate) == (2, 1, 1, 0.5)
    assert (first.p50_seconds, first.cost, first.credits_charged) == (12.0, Decimal("6"), 4)
    assert (second.jobs, second.failed, second.p95_seconds) == (2, 1, 30.0)
    assert second.margin == Decimal(4) - Decimal("15")
    html = render_to_string("ops/_node_attempts.html", {"node_stats": list(rows.values())})
    assert "gpu-2" in html and "50%" in html and "12.0 s" in html
    empty = render_to_string("ops/_node_attempts.html", {"node_stats": []})
    assert "No attempts on nodes in this period." in empty
