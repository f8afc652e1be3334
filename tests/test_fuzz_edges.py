"""Fuzz every JSON and form endpoint with hypothesis: never a 5xx, and a refused request
writes no row and no file.

The session endpoints (the studio's JSON and forms) are fuzzed as a signed-in user; the
public API, `/api/v1/` (DRF) and the OpenAI-compatible `/v1/videos` (JSON and multipart,
with uploads), with an API key, with `Idempotency-Key` headers on the creating calls, and
with valid bodies that have one or two fields broken so the deeper checks are reached too.
The examples are bounded (`MAX_EXAMPLES`, `API_EXAMPLES`, no per-example deadline) so the
run stays in seconds; `FUZZED` counts the requests sent and the last test prints the total.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from accounts.api_keys import create_api_key
from api.models import WebhookEndpoint
from api.openai_compat import video_id
from conftest import client_for
from generation.models import Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, png_bytes, setup_catalog, subscribe

pytestmark = pytest.mark.django_db
MAX_EXAMPLES = 150
API_EXAMPLES = 150
FUZZED = {"requests": 0, "5xx": 0}

# Strings that have broken things: NUL, lone surrogates, RTL marks, huge, markup, paths.
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "x\udfff",
            "\u202e",
            "../../etc/passwd",
            "<script>alert(1)</script>",
            "//evil.example/x",
            "https://evil.example/",
            "9" * 40,
            "-1",
            "1.5",
            "1e9",
            "NaN",
            "true",
            "wan2.1-t2v-1.3b",
            "480p",
            "16:9",
            "draft",
            "off_peak",
        ]
    ),
    st.text(min_size=3000, max_size=3000, alphabet="ab"),
)
JSON_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        NASTY_TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
SUBMIT_FIELDS = [
    "model",
    "prompt",
    "negative_prompt",
    "resolution",
    "duration",
    "aspect_ratio",
    "fps",
    "count",
    "mode",
    "seed",
    "project",
    "idempotency_key",
    "seed_mode",
]


def _json_body(fields: list[str]):
    objects = st.dictionaries(st.sampled_from(fields), JSON_VALUE, max_size=len(fields))
    return st.one_of(
        objects.map(lambda d: json.dumps(d, ensure_ascii=True).encode()),
        JSON_VALUE.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
        st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
        st.binary(max_size=50),
    )


def _form_text():
    # A browser cannot send a lone surrogate in a form (it is not UTF-8): leave them out.
    return NASTY_TEXT.filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))


def _form(fields: list[str]):
    return st.dictionaries(st.sampled_from(fields), _form_text(), max_size=len(fields))


class World:
    """alice's Acme with a take; every target URL is filled from here."""

    def __init__(self, alice, acme, bob) -> None:
        setup_catalog()
        fund(acme, 100_000)
        spec = TakeSpec(model="ltx-video-2b", prompt="a kite", resolution="480p", duration=2)
        [self.take] = submit_takes(acme, alice, spec, idempotency_key="fuzz-seed")
        self.acme = acme
        self.project = self.take.shot.project_id
        self.membership = acme.memberships.get(user=bob).pk
        self.client = client_for(alice, acme)


# (method, url template, kind, fields): kind "json", "form" or "query".
TARGETS = [
    ("POST", "/api/v1/takes/", "json", SUBMIT_FIELDS),
    ("POST", "/api/v1/takes/", "form", SUBMIT_FIELDS),
    ("POST", "/api/v1/takes/{take}/finalize/", "json", ["resolution", "idempotency_key"]),
    ("POST", "/api/v1/takes/{take}/cancel/", "json", ["x"]),
    ("POST", "/api/v1/projects/{project}/rough-cuts/", "json", ["crossfade_ms"]),
    ("POST", "/studio/", "form", SUBMIT_FIELDS),
    ("GET", "/studio/", "query", ["from", "seed", "model", "mode"]),
    ("GET", "/studio/quote/", "query", [*SUBMIT_FIELDS, "has_image", "has_last_frame"]),
    ("GET", "/studio/options/", "query", SUBMIT_FIELDS),
    ("GET", "/studio/takes/", "query", ["project"]),
    ("GET", "/studio/compare/", "query", ["take"]),
    ("POST", "/takes/{take}/favourite/", "form", ["favourite"]),
    ("GET", "/takes/{take}/status/", "query", ["card"]),
    ("POST", "/workspaces/", "form", ["name"]),
    ("POST", "/workspaces/{acme}/switch/", "form", ["next"]),
    ("POST", "/team/", "form", ["email", "role"]),
    ("POST", "/team/members/{membership}/role/", "form", ["role"]),
    ("POST", "/team/members/{membership}/cap/", "form", ["monthly_spend_cap"]),
    ("POST", "/billing/checkout/", "form", ["kind", "slug", "currency"]),
    ("GET", "/wallet/", "query", ["kind", "since", "until", "page"]),
    ("GET", "/wallet/ledger.csv", "query", ["kind", "since", "until"]),
    ("POST", "/accounts/login/", "form", ["login", "password", "remember", "next"]),
    ("POST", "/accounts/signup/", "form", ["email", "password1", "password2"]),
    ("POST", "/accounts/password/reset/", "form", ["email"]),
]


WATCHED = [
    "accounts.Workspace",
    "accounts.Membership",
    "accounts.Invitation",
    "auth.User",
    "account.EmailAddress",
    "billing.LedgerEntry",
    "billing.Hold",
    "billing.CreditLot",
    "generation.Project",
    "generation.Shot",
    "generation.Submission",
    "generation.Take",
    "generation.RoughCut",
]


def _counts(labels: list[str]) -> tuple[int, ...]:
    """Row counts of the models, in one query (two per request keep the fuzz fast)."""
    tables = [connection.ops.quote_name(apps.get_model(label)._meta.db_table) for label in labels]
    counts = ", ".join(f"(SELECT count(*) FROM {table})" for table in tables)  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        return tuple(cursor.fetchone())


def _snapshot(media: Path, labels: list[str] = WATCHED) -> tuple:
    files = sorted(str(p) for p in media.rglob("*") if p.is_file()) if media.exists() else []
    return _counts(labels), tuple(files)


@pytest.fixture
def world(alice, acme, bob, settings):
    settings.RATE_LIMIT_SUBMIT_BURST = "100000/m"
    settings.RATE_LIMIT_SUBMIT_SUSTAINED = "100000/h"
    settings.RATE_LIMIT_INVITE = "100000/h"
    settings.ACCOUNT_RATE_LIMITS = False
    return World(alice, acme, bob)


def _send(world: World, target, payload) -> int:
    method, template, kind, _fields = target
    url = template.format(
        take=world.take.pk, acme=world.acme.pk, membership=world.membership, project=world.project
    )
    client = world.client
    if kind == "json":
        response = client.post(url, payload, content_type="application/json")
    elif kind == "form":
        response = client.post(url, payload)
    else:
        response = client.get(url, payload)
    FUZZED["requests"] += 1
    if response.status_code >= 500:
        FUZZED["5xx"] += 1
    return response.status_code


def _payloads():
    choices = []
    for index, (_method, _url, kind, fields) in enumerate(TARGETS):
        body = _json_body(fields) if kind == "json" else _form(fields)
        choices.append(st.tuples(st.just(index), body))
    return st.one_of(choices)


@hsettings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(case=_payloads())
def test_no_endpoint_answers_5xx_and_refusals_write_nothing(world, case):
    index, payload = case
    media = Path(django_settings.MEDIA_ROOT)
    before = _snapshot(media)

    status = _send(world, TARGETS[index], payload)

    assert status < 500, (TARGETS[index], payload)
    if status >= 400:
        assert _snapshot(media) == before, (TARGETS[index], payload, status)


def test_every_target_once_with_each_fixed_nasty_value(world):
    """The corpus of the issue's findings against every target, deterministically."""
    nasty = ["a\x00b", "9" * 30, "x" * 100_001, "1.5", "", "//evil.example/x"]
    for target in TARGETS:
        fields = target[3]
        for value in nasty:
            payload: object = {field: value for field in fields}
            if target[2] == "json":
                payload = json.dumps({field: value for field in fields}).encode()
            media = Path(django_settings.MEDIA_ROOT)
            before = _snapshot(media)
            status = _send(world, target, payload)
            assert status < 500, (target, value[:20])
            if status >= 400:
                assert _snapshot(media) == before, (target, value[:20], status)
    print(f"\nfuzzed {FUZZED['requests']} requests, {FUZZED['5xx']} answered 5xx")
    assert FUZZED["5xx"] == 0


# --- the public API with a key: /api/v1/ (DRF) and the OpenAI-compatible /v1/videos ------

TAKE_BODY = {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 1}
WEBHOOK_BODY = {"url": "https://hooks.example.com/retake", "event_types": ["take.succeeded"]}
VIDEO_BODY = {"prompt": "a kite", "model": "wan2.1-t2v-1.3b", "seconds": "1", "size": "832x480"}
WEBHOOK_FIELDS = ["url", "description", "event_types", "is_active", "low_balance_threshold"]
VIDEO_FIELDS = ["prompt", "model", "seconds", "size", "input_reference"]
TAKE_FILTERS = ["status", "model", "mode", "project", "shot", "created_after", "cursor"]
# Files a multipart body may carry: a real image, bytes that are none, an empty file.
UPLOAD_BYTES = st.one_of(
    st.just(png_bytes()), st.binary(max_size=64), st.just(b""), st.just(b"GIF89a" + b"\0" * 20)
)

# (method, url template, kind, fields, a valid body that one or two fields are broken in).
API_TARGETS = [
    ("POST", "/api/v1/takes/", "json", [*SUBMIT_FIELDS, "image"], TAKE_BODY),
    ("POST", "/api/v1/takes/", "multipart", [*SUBMIT_FIELDS, "image", "last_frame"], TAKE_BODY),
    ("POST", "/api/v1/quotes/", "json", [*SUBMIT_FIELDS, "has_image"], TAKE_BODY),
    ("POST", "/api/v1/takes/{draft}/finalize/", "json", ["resolution"], {"resolution": "720p"}),
    ("POST", "/api/v1/takes/{take}/cancel/", "json", ["reason"], {}),
    ("POST", "/api/v1/projects/", "json", ["name"], {"name": "Fuzz"}),
    ("POST", "/api/v1/projects/", "multipart", ["name"], {"name": "Fuzz"}),
    ("POST", "/api/v1/projects/{project}/rough-cuts/", "json", ["crossfade_ms"], {}),
    ("GET", "/api/v1/rough-cuts/", "query", ["project", "status", "cursor"], {}),
    ("POST", "/api/v1/webhook-endpoints/", "json", WEBHOOK_FIELDS, WEBHOOK_BODY),
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint}/", "json", WEBHOOK_FIELDS, WEBHOOK_BODY),
    ("GET", "/api/v1/takes/", "query", [*TAKE_FILTERS, "page_size"], {}),
    ("GET", "/api/v1/shots/", "query", ["project", "cursor", "page_size"], {}),
    ("GET", "/api/v1/projects/", "query", ["cursor", "page_size"], {}),
    ("GET", "/api/v1/wallet/usage/", "query", ["days"], {}),
    ("GET", "/api/v1/wallet/ledger/", "query", ["cursor", "page_size"], {}),
    ("POST", "/v1/videos", "json", VIDEO_FIELDS, VIDEO_BODY),
    ("POST", "/v1/videos", "multipart", VIDEO_FIELDS, VIDEO_BODY),
    ("GET", "/v1/videos", "query", ["after", "limit", "order"], {}),
    ("GET", "/v1/videos/{video}/content", "query", ["variant"], {}),
]
LEFT_OUT = object()
CREATES = {"/api/v1/takes/", "/v1/videos", "/api/v1/projects/", "/api/v1/webhook-endpoints/"}
API_WATCHED = [
    *WATCHED,
    "accounts.ApiKey",
    "api.IdempotentResponse",
    "api.HiddenTake",
    "api.WebhookEndpoint",
    "api.WebhookDelivery",
]


def _api_snapshot(media: Path) -> tuple:
    return _snapshot(media, API_WATCHED)


class ApiWorld(World):
    """The same Acme on the Pro plan (API access), an API key, a finished draft to
    finalize, a webhook endpoint to patch and a client that sends the key."""

    def __init__(self, alice, acme, bob) -> None:
        super().__init__(alice, acme, bob)
        subscribe(acme, "pro")
        spec = TakeSpec(
            model="wan2.1-t2v-1.3b", prompt="a draft", resolution="480p", duration=1, mode="draft"
        )
        [self.draft] = submit_takes(acme, alice, spec, idempotency_key="fuzz-draft")
        Take.objects.filter(pk=self.draft.pk).update(status=TakeStatus.SUCCEEDED)
        self.endpoint = WebhookEndpoint.objects.for_workspace(acme).create(
            workspace=acme, url=WEBHOOK_BODY["url"], event_types=["take.succeeded"]
        )
        _id, raw = create_api_key(acme, name="fuzz", acting_user=alice)
        self.api = Client(headers={"authorization": f"Bearer {raw}"})


@pytest.fixture
def api_world(alice, acme, bob, settings, monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)
    settings.RATE_LIMIT_SUBMIT_BURST = "100000/m"
    settings.RATE_LIMIT_SUBMIT_SUSTAINED = "100000/h"
    settings.API_RATE_BURST = "100000/s"
    settings.API_RATE_SUSTAINED = "100000/hour"
    return ApiWorld(alice, acme, bob)


def _api_send(world: ApiWorld, target, payload, key: str | None) -> int:
    method, template, kind, _fields, _base = target
    url = template.format(
        take=world.take.pk,
        project=world.project,
        draft=world.draft.pk,
        endpoint=world.endpoint.pk,
        video=video_id(world.take),
    )
    headers = {"idempotency-key": key} if key is not None else {}
    if kind == "json":
        send = world.api.patch if method == "PATCH" else world.api.post
        response = send(url, payload, content_type="application/json", headers=headers)
    elif kind == "multipart":
        response = world.api.post(url, payload, headers=headers)
    else:
        response = world.api.get(url, payload)
    FUZZED["requests"] += 1
    FUZZED["api"] = FUZZED.get("api", 0) + 1
    if response.status_code >= 500:
        FUZZED["5xx"] += 1
    return response.status_code


def _broken(base: dict, fields: list[str], values):
    """The valid body with one or two fields replaced by `values` or left out."""
    changes = st.dictionaries(
        st.sampled_from(fields), st.one_of(values, st.just(LEFT_OUT)), min_size=1, max_size=2
    )

    def apply(change: dict) -> dict:
        body = dict(base)
        for field, value in change.items():
            if value is LEFT_OUT:
                body.pop(field, None)
            else:
                body[field] = value
        return body

    return changes.map(apply)


def _upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("frame.png", data, content_type="image/png")


def _multipart(fields: list[str], base: dict):
    files = {"image", "last_frame", "input_reference"} & set(fields)
    text = [f for f in fields if f not in files]
    form = st.one_of(_form(text), _broken({k: str(v) for k, v in base.items()}, text, _form_text()))
    uploads = st.dictionaries(st.sampled_from(sorted(files)), UPLOAD_BYTES.map(_upload))
    return st.tuples(form, uploads if files else st.just({})).map(lambda t: {**t[0], **t[1]})


def _api_payloads():
    choices = []
    for index, (_method, _url, kind, fields, base) in enumerate(API_TARGETS):
        if kind == "json":
            body = st.one_of(
                _json_body(fields),
                _broken(base, fields, JSON_VALUE).map(lambda d: json.dumps(d).encode()),
            )
        elif kind == "multipart":
            body = _multipart(fields, base)
        else:
            body = _form(fields)
        key = st.none()
        if _url in CREATES:
            # Header values arrive as latin-1 text; a few keys repeat so replays happen.
            key = st.one_of(
                st.none(),
                st.sampled_from(["k1", "k2", "", " ", "x" * 201]),
                st.text(alphabet=st.characters(max_codepoint=255), max_size=30),
            )
        choices.append(st.tuples(st.just(index), body, key))
    return st.one_of(choices)


@hsettings(
    max_examples=API_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(case=_api_payloads())
def test_the_public_api_never_answers_5xx_and_refusals_write_nothing(api_world, case):
    index, payload, key = case
    media = Path(django_settings.MEDIA_ROOT)
    before = _api_snapshot(media)

    status = _api_send(api_world, API_TARGETS[index], payload, key)

    assert status < 500, (API_TARGETS[index][:3], payload, key)
    if status >= 400:
        assert _api_snapshot(media) == before, (API_TARGETS[index][:3], payload, key, status)
    else:
        FUZZED["accepted"] = FUZZED.get("accepted", 0) + 1


def test_every_api_target_once_with_each_fixed_nasty_value(api_world):
    """The same corpus against every target of the public API, each value in a valid body
    in place of one field (the field turns with the value, so every field gets some)."""
    nasty = ["a\x00b", "\ud800", "9" * 30, "x" * 100_001, "1.5", "", True, [], {"a": 1}]
    for number, target in enumerate(API_TARGETS):
        _method, _url, kind, fields, base = target
        for turn, value in enumerate(nasty):
            if kind != "json" and (not isinstance(value, str) or "\ud800" in value):
                continue  # a form carries text only, and never a lone surrogate (not UTF-8)
            field = fields[(number + turn) % len(fields)]
            payload: object = {**base, field: value}
            if kind == "json":
                payload = json.dumps(payload).encode()
            media = Path(django_settings.MEDIA_ROOT)
            before = _api_snapshot(media)
            status = _api_send(api_world, target, payload, None)
            assert status < 500, (target[:3], field, str(value)[:20])
            if status >= 400:
                assert _api_snapshot(media) == before, (target[:3], field, status)
    print(
        f"\nfuzzed {FUZZED['requests']} requests ({FUZZED.get('api', 0)} to the public API "
        f"with a key, {FUZZED.get('accepted', 0)} of its generated ones accepted), "
        f"{FUZZED['5xx']} answered 5xx"
    )
    assert FUZZED["5xx"] == 0
