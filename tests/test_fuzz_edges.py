"""Fuzz every JSON and form endpoint with hypothesis: never a 5xx, and a refused request
writes no row and no file.

The examples are bounded (`MAX_EXAMPLES`, no per-example deadline) so the run stays near
ten seconds; `FUZZED` counts the requests sent and the last test prints the total.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conftest import client_for
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog

pytestmark = pytest.mark.django_db
MAX_EXAMPLES = 150
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


def _snapshot(media: Path) -> tuple:
    rows = []
    for label in WATCHED:
        manager = apps.get_model(label).objects
        unscoped = getattr(manager, "dangerously_unscoped", manager.all)
        queryset = unscoped()
        rows.append(queryset.count())
    files = sorted(str(p) for p in media.rglob("*") if p.is_file()) if media.exists() else []
    return tuple(rows), tuple(files)


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
