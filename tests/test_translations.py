"""The committed Chinese catalog is complete and its compiled .mo matches the .po."""

from __future__ import annotations

import gettext
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

# Runs processes outside pytest: `--clock` can't move their clocks.
pytestmark = pytest.mark.live

LOCALE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"


def _catalog(mo: Path) -> dict:
    with mo.open("rb") as handle:
        return dict(gettext.GNUTranslations(handle)._catalog)


def test_committed_mo_is_compiled_from_the_committed_po(tmp_path):
    assert shutil.which("msgfmt"), "msgfmt (gettext) is needed to compile translations"
    fresh = tmp_path / "django.mo"
    subprocess.run(
        ["msgfmt", "--check-format", "-o", str(fresh), str(LOCALE / "django.po")], check=True
    )
    assert _catalog(LOCALE / "django.mo") == _catalog(fresh), (
        "locale/zh_Hans/LC_MESSAGES/django.mo is stale: run "
        "`manage.py compilemessages -l zh_Hans` and commit it"
    )


def test_every_message_has_a_chinese_translation():
    catalog = _catalog(LOCALE / "django.mo")
    untranslated = [key for key, value in catalog.items() if key and not value]
    assert not untranslated
    assert catalog["Generate"] == "生成"
    # No fuzzy or empty entries were left out of the compiled catalog.
    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert "#, fuzzy" not in po
    assert po.count('msgstr ""\n\n') == 0


def test_pages_render_in_chinese_when_chosen(db):
    client = Client()
    with translation.override("zh-hans"):
        response = client.get("/pricing/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    body = response.content.decode()
    assert "价格" in body and "积分包" in body
