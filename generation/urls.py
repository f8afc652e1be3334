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
    path("projects/", views.project_list, name="project_list"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
]
