from django.urls import path

from . import views

urlpatterns = [
    path("studio/", views.studio, name="studio"),
    path("studio/options/", views.studio_options, name="studio_options"),
    path("studio/quote/", views.studio_quote, name="studio_quote"),
    path("studio/takes/", views.take_grid, name="take_grid"),
    path("studio/compare/", views.compare, name="compare"),
    path("takes/<uuid:take_id>/", views.take_detail, name="take_detail"),
    path("takes/<uuid:take_id>/status/", views.take_status, name="take_status"),
    path("takes/<uuid:take_id>/download/", views.take_download, name="take_download"),
    path("takes/<uuid:take_id>/choose/", views.take_choose, name="take_choose"),
    path("takes/<uuid:take_id>/favourite/", views.take_favourite, name="take_favourite"),
    path("takes/<uuid:take_id>/cancel/", views.take_cancel, name="take_cancel"),
    path("takes/<uuid:take_id>/finalize/", views.take_finalize, name="take_finalize"),
    path("takes/<uuid:take_id>/archive/", views.take_archive, name="take_archive"),
    path("shots/<int:shot_id>/draw/", views.shot_draw, name="shot_draw"),
    path("shots/<int:shot_id>/edit/", views.shot_edit, name="shot_edit"),
    path("projects/", views.project_list, name="project_list"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/edit/", views.project_edit, name="project_edit"),
    path("projects/<int:project_id>/rough-cut/", views.rough_cut_start, name="rough_cut_start"),
    path("rough-cuts/<uuid:rough_cut_id>/", views.rough_cut_status, name="rough_cut_status"),
    path(
        "rough-cuts/<uuid:rough_cut_id>/<str:kind>/",
        views.rough_cut_download,
        name="rough_cut_download",
    ),
]
