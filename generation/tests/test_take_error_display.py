"""Why a take failed, in the creator's language on pages; as stored (English) in the API.

The platform's own sentences are translated with their values; what a node or provider
said is shown as they wrote it, inside the translated framing."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import translation

from conftest import client_for
from generation.api import take_json
from generation.display import take_error
from generation.lifecycle import cancel_take, fail_take
from generation.models import Take
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "stored, chinese",
    [
        ("Canceled.", "已取消。"),
        ("Blocked by Runway's moderation: nudity", "被Runway的内容审核拦截：nudity"),
        ("Blocked by the node's moderation: unsafe prompt", "被节点的内容审核拦截：unsafe prompt"),
        ("Runway: The provider reported the job canceled.", "Runway：服务商报告任务已取消。"),
        (
            "Gave up after 3 attempts: The node reported the prediction failed.",
            "尝试 3 次后放弃：节点报告预测失败。",
        ),
        (
            "Gave up after 3 attempts: 10.0.0.5: connection reset",
            "尝试 3 次后放弃：10.0.0.5: connection reset",
        ),
        (
            "The output is not a playable video: moov atom not found",
            "输出不是可播放的视频：moov atom not found",
        ),
        (
            "The GPU node refused the request (422): prompt: too long",
            "GPU 节点拒绝了请求（422）：prompt: too long",
        ),
        ("Could not copy the output from fal: 403", "无法从 fal 复制输出：403"),
        ("The ComfyUI workflow saved no video.", "ComfyUI 工作流没有保存视频。"),
        ("Kling reported success without an output.", "Kling 报告成功，但没有输出。"),
        ("CUDA out of memory", "CUDA out of memory"),  # a node's words: as written
    ],
)
def test_platform_sentences_read_in_chinese(stored, chinese):
    with translation.override("zh-hans"):
        assert take_error(stored) == chinese
    with translation.override("en"):
        assert take_error(stored) == stored


def _take(workspace, user) -> Take:
    setup_catalog()
    fund(workspace)
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        [take] = submit_takes(
            workspace,
            user,
            TakeSpec(model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=1),
            idempotency_key="k1",
        )
    return take


def test_a_chinese_cancel_is_stored_in_english_and_shown_in_chinese(alice, acme):
    take = _take(acme, alice)
    with translation.override("zh-hans"):  # canceled from a Chinese page
        cancel_take(take)
    take.refresh_from_db()
    assert take.error == "Canceled."
    assert take_json(take)["error"] == "Canceled."  # what /api/v1 returns: stable English


def test_the_take_page_shows_the_failure_in_chinese_and_the_api_keeps_english(alice, acme):
    take = _take(acme, alice)
    fail_take(take.pk, "Gave up after 3 attempts: The node reported the prediction failed.")
    take.refresh_from_db()
    client = client_for(alice, acme)
    for url in (f"/takes/{take.pk}/", f"/takes/{take.pk}/status/"):
        body = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
        assert "尝试 3 次后放弃：节点报告预测失败。" in body, url
        assert "Gave up after" not in body, url
    english = client.get(f"/takes/{take.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Gave up after 3 attempts: The node reported the prediction failed." in english
    assert take_json(take)["error"].startswith("Gave up after 3 attempts")
