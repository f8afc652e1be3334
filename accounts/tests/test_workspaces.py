import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from accounts import actions
from accounts.actions import WorkspaceActionError
from accounts.middleware import SESSION_KEY
from accounts.models import Invitation, Membership, Role
from conftest import client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _seats(request):
    """Acme on a plan with seats to invite into (Free has one: its owner)."""
    if "acme" in request.fixturenames:
        from generation.tests.helpers import subscribe

        subscribe(request.getfixturevalue("acme"), "studio")


def test_invite_by_email_and_accept(alice, acme, django_capture_on_commit_callbacks):
    client = client_for(alice, acme)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/team/", {"email": "Dana@Example.com", "role": "admin"})
    assert response.status_code == 302
    invitation = Invitation.objects.get(workspace=acme)
    assert invitation.email == "dana@example.com"
    link = re.search(r"https?://\S+", mail.outbox[-1].body).group(0)
    assert invitation.token in link
    dana = make_user("dana@example.com")
    dana_client = client_for(dana)
    assert dana_client.get(f"/invitations/{invitation.token}/").status_code == 200
    response = dana_client.post(f"/invitations/{invitation.token}/")
    assert response.status_code == 302
    membership = Membership.objects.get(workspace=acme, user=dana)
    assert membership.role == Role.ADMIN
    assert dana_client.session[SESSION_KEY] == acme.pk


def test_expired_invitation_is_refused(alice, acme):
    invitation = actions.invite_member(acme, "dana@example.com", "member", acting_user=alice)
    dana = make_user("dana@example.com")
    with time_machine.travel(timezone.now() + timedelta(hours=73)):
        response = client_for(dana).post(f"/invitations/{invitation.token}/")
    assert response.status_code == 200
    assert not Membership.objects.filter(workspace=acme, user=dana).exists()


def test_invitation_for_someone_else_is_a_404(alice, acme, charlie):
    invitation = actions.invite_member(acme, "dana@example.com", "member", acting_user=alice)
    client = client_for(charlie)
    assert client.get(f"/invitations/{invitation.token}/").status_code == 404
    assert client.post(f"/invitations/{invitation.token}/").status_code == 404
    assert not Membership.objects.filter(workspace=acme, user=charlie).exists()


def test_members_cannot_invite(acme, bob):
    with pytest.raises(WorkspaceActionError):
        actions.invite_member(acme, "x@example.com", "member", acting_user=bob)
    assert not Invitation.objects.exists()


def test_admin_cannot_promote_to_owner_or_remove_owner(alice, acme, bob):
    bob_membership = Membership.objects.get(workspace=acme, user=bob)
    actions.set_role(bob_membership, Role.ADMIN, acting_user=alice)
    alice_membership = Membership.objects.get(workspace=acme, user=alice)
    with pytest.raises(WorkspaceActionError):
        actions.set_role(bob_membership, Role.OWNER, acting_user=bob)
    with pytest.raises(WorkspaceActionError):
        actions.remove_member(alice_membership, acting_user=bob)
    assert Membership.objects.get(workspace=acme, user=alice).role == Role.OWNER


def test_last_owner_cannot_leave_or_be_demoted(alice, acme, bob):
    with pytest.raises(WorkspaceActionError, match="last owner"):
        actions.leave_workspace(acme, alice)
    alice_membership = Membership.objects.get(workspace=acme, user=alice)
    with pytest.raises(WorkspaceActionError, match="at least one owner"):
        actions.set_role(alice_membership, Role.MEMBER, acting_user=alice)
    actions.set_role(
        Membership.objects.get(workspace=acme, user=bob), Role.OWNER, acting_user=alice
    )
    actions.leave_workspace(acme, alice)
    assert not Membership.objects.filter(workspace=acme, user=alice).exists()


def test_leave_page_refuses_last_owner_with_a_message(alice, acme):
    client = client_for(alice, acme)
    response = client.post("/team/leave/", follow=True)
    assert "last owner" in response.content.decode()
    assert Membership.objects.filter(workspace=acme, user=alice).exists()


def test_member_can_leave_and_lands_back_in_personal_workspace(acme, bob):
    client = client_for(bob, acme)
    assert client.post("/team/leave/").status_code == 302
    assert not Membership.objects.filter(workspace=acme, user=bob).exists()
    response = client.get("/team/")
    assert response.context["workspace"].is_personal


def test_owner_removes_member_and_sets_spending_cap(alice, acme, bob):
    client = client_for(alice, acme)
    membership = Membership.objects.get(workspace=acme, user=bob)
    client.post(f"/team/members/{membership.pk}/cap/", {"monthly_spend_cap": "500"})
    membership.refresh_from_db()
    assert membership.monthly_spend_cap == 500
    client.post(f"/team/members/{membership.pk}/cap/", {"monthly_spend_cap": "-3"})
    membership.refresh_from_db()
    assert membership.monthly_spend_cap == 500
    client.post(f"/team/members/{membership.pk}/remove/")
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_member_cannot_change_roles_over_http(alice, acme, bob):
    alice_membership = Membership.objects.get(workspace=acme, user=alice)
    client_for(bob, acme).post(f"/team/members/{alice_membership.pk}/role/", {"role": "member"})
    assert Membership.objects.get(pk=alice_membership.pk).role == Role.OWNER


def test_switcher_changes_current_workspace(alice, acme):
    client = client_for(alice)
    assert client.get("/team/").context["workspace"].is_personal
    client.post(f"/workspaces/{acme.pk}/switch/")
    assert client.get("/team/").context["workspace"] == acme


def test_switching_to_a_workspace_you_do_not_belong_to_is_a_404(acme, charlie):
    client = client_for(charlie)
    assert client.post(f"/workspaces/{acme.pk}/switch/").status_code == 404
    assert client.get("/team/").context["workspace"].is_personal


def test_a_stale_session_workspace_falls_back_to_personal(acme, bob):
    client = client_for(bob, acme)
    Membership.objects.filter(workspace=acme, user=bob).delete()
    assert client.get("/team/").context["workspace"].is_personal


def test_create_team_workspace(alice):
    client = client_for(alice)
    client.post("/workspaces/", {"name": "Studio Nine"})
    membership = Membership.objects.get(user=alice, workspace__name="Studio Nine")
    assert membership.role == Role.OWNER and not membership.workspace.is_personal


def test_blank_team_name_is_refused(alice):
    client_for(alice).post("/workspaces/", {"name": "   "})
    assert Membership.objects.filter(user=alice).count() == 1
