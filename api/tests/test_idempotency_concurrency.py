"""Ten clients retrying one create at once with one Idempotency-Key, on PostgreSQL: one
take, one hold, and ten identical answers."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from api.tests.conftest import bearer
from billing.models import Hold
from generation.models import Submission, Take

pytestmark = pytest.mark.django_db(transaction=True)

TAKE = {"model": "wan2.1-t2v-1.3b", "prompt": "one take", "resolution": "480p", "duration": 2}


def test_ten_concurrent_creates_with_one_key_make_one_take_and_one_hold(acme_key, pro_acme):
    start = threading.Barrier(10)
    answers: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def create() -> None:
        client = bearer(acme_key)
        try:
            start.wait()
            answer = client.post(
                "/api/v1/takes/", TAKE, format="json", HTTP_IDEMPOTENCY_KEY="same-key"
            )
            answers.append((answer.status_code, answer.content))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(answers) == 10
    assert {status for status, _ in answers} == {201}
    assert len({body for _, body in answers}) == 1  # byte for byte the same
    assert Submission.objects.count() == 1 and Take.objects.count() == 1
    assert Hold.objects.filter(workspace=pro_acme).count() == 1
