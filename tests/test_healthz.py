import pytest

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_healthz_is_200_when_database_broker_and_storage_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: item["ok"] for name, item in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "storage": True,
    }


def test_healthz_is_503_and_names_the_broker_when_it_is_down(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"]["ok"] is False and "Error" in checks["broker"]["error"]
    assert checks["database"]["ok"] is True


def test_healthz_is_503_when_storage_cannot_be_written(client, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "media")},
        },
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"]["ok"] is False
