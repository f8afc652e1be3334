from django.urls import path

from . import views

urlpatterns = [
    path("workspaces/", views.workspace_list, name="workspace_list"),
    path("workspaces/<int:workspace_id>/switch/", views.switch_workspace, name="switch_workspace"),
    path("account/notifications/", views.notification_settings, name="notification_settings"),
    path("team/", views.team, name="team"),
    path("team/leave/", views.leave, name="leave_workspace"),
    path("team/members/<int:membership_id>/role/", views.change_role, name="change_role"),
    path("team/members/<int:membership_id>/cap/", views.change_spend_cap, name="change_spend_cap"),
    path("team/members/<int:membership_id>/remove/", views.remove_member, name="remove_member"),
    path(
        "team/invitations/<int:invitation_id>/revoke/",
        views.revoke_invitation,
        name="revoke_invitation",
    ),
    path("invitations/<str:token>/", views.accept_invitation, name="accept_invitation"),
]
