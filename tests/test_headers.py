"""Response headers (issue 13, finding 7): a Content-Security-Policy without inline code,
Permissions-Policy, Secure cookies outside DEBUG, and the same in the nginx config; and
templates that stay free of inline scripts, handlers and styles so the policy holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from conftest import client_for

ROOT = Path(settings.BASE_DIR)
TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("*/templates")]
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>\s*\S", re.I)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.I)
STYLE_ELEMENT = re.compile(r"<style\b", re.I)
HANDLER_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=\s*[\"']", re.I)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']\s*javascript:""", re.I)


def _templates() -> list[Path]:
    found = []
    for folder in TEMPLATE_DIRS:
        if ".venv" not in folder.parts:
            found.extend(folder.rglob("*.html"))
    return sorted(found)


def test_the_template_scan_finds_the_templates():
    names = {path.name for path in _templates()}
    assert {"base.html", "studio.html", "take.html"} <= names


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_hold_no_inline_script_handler_or_style(path):
    text = path.read_text(encoding="utf-8")
    problems = [
        f"{kind} at line {text[: match.start()].count(chr(10)) + 1}"
        for kind, pattern in (
            ("inline <script> body", INLINE_SCRIPT),
            ("style attribute", STYLE_ATTRIBUTE),
            ("<style> element", STYLE_ELEMENT),
            ("event handler attribute", HANDLER_ATTRIBUTE),
            ("javascript: URL", JS_URL),
        )
        for match in pattern.finditer(text)
    ]
    assert not problems, f"{path.relative_to(ROOT)}: {problems} (the CSP forbids them)"


@pytest.mark.django_db
def test_pages_carry_a_strict_csp_and_permissions_policy(alice, acme):
    for client, path in ((client_for(alice, acme), "/studio/"), (client_for(alice), "/pricing/")):
        response = client.get(path)
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert "camera=()" in response["Permissions-Policy"]
        assert "geolocation=()" in response["Permissions-Policy"]


def test_cookies_are_secure_whenever_debug_is_off():
    assert not settings.DEBUG
    assert settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE


@pytest.mark.django_db
def test_the_session_cookie_is_sent_with_secure(alice):
    from django.test import Client

    client = Client()
    client.post("/accounts/login/", {"login": alice.email, "password": "a-long-test-password"})
    assert client.cookies["sessionid"]["secure"] is True


def test_nginx_sends_the_same_headers():
    conf = (ROOT / "platform" / "nginx" / "retake.conf").read_text()
    for header in (
        "Content-Security-Policy",
        "Permissions-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Strict-Transport-Security",
    ):
        assert re.search(rf"add_header\s+{header}\s", conf), f"nginx lacks {header}"
    assert "'unsafe-inline'" not in conf
    assert re.search(r"location /_media/ \{\s*internal;", conf)
