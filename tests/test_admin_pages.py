"""Every model registered in the admin: its list and (where allowed) add page open for
staff, and the catalog's own take action cancels through the lifecycle."""

import pytest
from django.contrib import admin
from django.urls import reverse

from conftest import client_for, make_user

pytestmark = pytest.mark.django_db

REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name) for model in admin.site._registry
)


@pytest.fixture
def staff_client():
    user = make_user("root@example.com")
    user.is_staff = user.is_superuser = True
    user.save()
    return client_for(user)


def test_the_catalog_and_takes_are_in_the_admin():
    for name in ("videomodel", "node", "nodepool", "take", "project", "shot"):
        assert ("generation", name) in REGISTERED


@pytest.mark.parametrize(("app", "model"), REGISTERED)
def test_admin_list_and_add_pages_open(staff_client, app, model):
    assert staff_client.get(reverse(f"admin:{app}_{model}_changelist")).status_code == 200
    add = staff_client.get(reverse(f"admin:{app}_{model}_add"))
    assert add.status_code in (200, 403)  # 403: rows that only actions create


def test_admin_is_closed_to_creators(alice):
    response = client_for(alice).get(reverse("admin:generation_take_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
