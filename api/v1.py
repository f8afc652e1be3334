"""`/api/v1/`: the REST API for programs and the studio (DRF viewsets).

Thin: each view parses input with a serializer and calls the named action the studio
calls (`submit_takes`, `finalize_take`, `cancel_take`, `start_rough_cut`, `quote_for`, the
ledger's queries); every query names the caller's workspace. Lists page with opaque
cursors, newest first.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from billing import ledger, plans, pricing
from billing.models import CreditLot, LedgerEntry, RateCard
from billing.periods import billing_time_zone
from generation.lifecycle import cancel_take
from generation.models import Project, RoughCut, RoughCutStatus, Shot, Take, VideoModel
from generation.roughcut import start_rough_cut
from generation.submission import TakeSpec, check_spec, finalize_take, submit_takes

from . import idempotency
from . import serializers as s
from . import webhooks as hooks
from .base import ApiViewSet
from .errors import ApiError
from .models import WebhookDelivery, WebhookEndpoint

ERRORS = {
    400: OpenApiResponse(description="Invalid input: `detail`, `field`, `errors`, `code`."),
    401: OpenApiResponse(description="No key, or an invalid, revoked or expired one."),
    403: OpenApiResponse(description="The plan has no API access, or the role may not."),
    404: OpenApiResponse(description="No such object in this workspace."),
    429: OpenApiResponse(description="Rate limited: see `Retry-After`."),
}
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Retry safely: the same key and body replay the first response; "
    "the same key with another body gets 409.",
)


def _errors(*codes: int) -> dict:
    return {code: ERRORS.get(code, OpenApiResponse(description="Refused.")) for code in codes}


class ModelViewSet(ApiViewSet):
    """The video models the workspace can use, with their prices now."""

    pagination_class = None
    serializer_class = s.VideoModelSerializer

    @extend_schema(responses={200: s.VideoModelSerializer(many=True), **_errors(401, 403, 429)})
    def list(self, request):
        models = list(VideoModel.objects.filter(is_active=True))
        context = {
            "plan": plans.plan_for(self.workspace),
            "rate_cards": {c.video_model_id: c for c in RateCard.objects.all()},
            "schedule": pricing.active_schedule(),
            "at": timezone.now(),
        }
        return Response(s.VideoModelSerializer(models, many=True, context=context).data)


class QuoteViewSet(ApiViewSet):
    """What a take would cost now: the same check and quote the studio and submission use."""

    pagination_class = None
    serializer_class = s.QuoteRequestSerializer

    @extend_schema(
        request=s.QuoteRequestSerializer,
        responses={200: s.QuoteAnswerSerializer, **_errors(400, 401, 403, 429)},
    )
    def create(self, request):
        form = s.QuoteRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        spec, video_model = check_spec(
            self.workspace,
            TakeSpec(
                model=data["model"],
                prompt="-",
                resolution=data["resolution"],
                duration=data["duration"],
                aspect_ratio=data["aspect_ratio"],
                mode=data["mode"],
            ),
            has_image=data["has_image"],
        )
        try:
            quote = pricing.quote_for(
                self.workspace,
                video_model=video_model,
                resolution=spec.resolution,
                seconds=spec.duration,
                mode=spec.mode,
            )
        except pricing.QuoteError as exc:
            raise ApiError(str(exc), "mode") from exc
        return Response(
            {"quote": quote.as_dict(), "available": ledger.available_credits(self.workspace)}
        )


class TakeFilterSerializer(serializers.Serializer):
    status = serializers.CharField(required=False, help_text="Comma-separated statuses.")
    model = serializers.CharField(required=False)
    mode = serializers.CharField(required=False)
    project = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    shot = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class TakeViewSet(ApiViewSet):
    serializer_class = s.TakeSerializer
    lookup_url_kwarg = "take_id"
    submission_actions = ("create", "finalize")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Take.objects.none()
        return Take.objects.for_workspace(self.workspace).select_related("video_model", "node")

    def get_object(self) -> Take:
        take = self.get_queryset().filter(pk=self.kwargs["take_id"]).first()
        if take is None:
            raise Http404
        return take

    @extend_schema(parameters=[TakeFilterSerializer], responses={200: s.TakeSerializer(many=True)})
    def list(self, request):
        filters = TakeFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        takes = self.get_queryset()
        if f.get("status"):
            takes = takes.filter(status__in=[x.strip() for x in f["status"].split(",")])
        if f.get("model"):
            takes = takes.filter(video_model__slug=f["model"])
        if f.get("mode"):
            takes = takes.filter(mode=f["mode"])
        if f.get("project"):
            takes = takes.filter(shot__project_id=f["project"])
        if f.get("shot"):
            takes = takes.filter(shot_id=f["shot"])
        if f.get("created_after"):
            takes = takes.filter(created_at__gt=f["created_after"])
        if f.get("created_before"):
            takes = takes.filter(created_at__lt=f["created_before"])
        page = self.paginate_queryset(takes)
        return self.get_paginated_response(s.TakeSerializer(page, many=True).data)

    @extend_schema(
        request={
            "application/json": s.TakeCreateSerializer,
            "multipart/form-data": s.TakeCreateSerializer,
        },
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: s.TakeListSerializer,
            402: OpenApiResponse(description="Not enough credits, or a spending cap reached."),
            409: OpenApiResponse(description="Idempotency-Key reused with another body."),
            **_errors(400, 401, 403, 404, 429),
        },
    )
    def create(self, request):
        key, print_, replayed = idempotency.begin(request, self.workspace)
        if replayed is not None:
            return replayed
        form = s.TakeCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        project = None
        if data.get("project") is not None:
            project = (
                Project.objects.for_workspace(self.workspace).filter(pk=data["project"]).first()
            )
            if project is None:
                raise ApiError(_("Unknown project."), "project", status_code=404, code="not_found")
        takes = submit_takes(
            self.workspace,
            request.user,
            TakeSpec(
                model=data["model"],
                prompt=data["prompt"],
                negative_prompt=data["negative_prompt"],
                resolution=data["resolution"],
                duration=data["duration"],
                aspect_ratio=data["aspect_ratio"],
                fps=data.get("fps"),
                count=data["count"],
                mode=data["mode"],
                seed=data.get("seed"),
            ),
            idempotency_key=f"api:{key}" if key else f"api:auto:{uuid.uuid4()}",
            image=data.get("image"),
            project=project,
            last_frame=data.get("last_frame"),
            api_key=self.api_key,
        )
        response = Response({"takes": s.TakeSerializer(takes, many=True).data}, status=201)
        if key:
            return idempotency.remember(self.workspace, key, print_, response)
        return response

    @extend_schema(responses={200: s.TakeSerializer, **_errors(401, 403, 404, 429)})
    def retrieve(self, request, take_id=None):
        return Response(s.TakeSerializer(self.get_object()).data)

    @extend_schema(
        request=None,
        responses={
            200: s.TakeSerializer,
            409: OpenApiResponse(description="The take already finished."),
            **_errors(401, 403, 404, 429),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, take_id=None):
        take = cancel_take(self.get_object())
        return Response(s.TakeSerializer(self.get_queryset().get(pk=take.pk)).data)

    @extend_schema(
        request=s.FinalizeSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.TakeSerializer, **_errors(400, 401, 402, 403, 404, 429)},
    )
    @action(detail=True, methods=["post"])
    def finalize(self, request, take_id=None):
        draft = self.get_object()
        form = s.FinalizeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        key = idempotency.header_key(request) or f"finalize:{draft.pk}"
        final = finalize_take(
            draft,
            request.user,
            idempotency_key=f"api:{key}",
            resolution=form.validated_data["resolution"] or None,
            api_key=self.api_key,
        )
        return Response(s.TakeSerializer(final).data, status=201)


class ProjectViewSet(ApiViewSet):
    serializer_class = s.ProjectSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return Project.objects.for_workspace(self.workspace)

    @extend_schema(responses={200: s.ProjectSerializer(many=True), **_errors(401, 403, 429)})
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ProjectSerializer(page, many=True).data)

    @extend_schema(
        request=s.ProjectCreateSerializer,
        responses={201: s.ProjectSerializer, **_errors(400, 401, 403, 429)},
    )
    def create(self, request):
        form = s.ProjectCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        name = form.validated_data["name"].strip()
        if not name:
            raise ApiError(_("Give the project a name."), "name")
        project = Project.objects.for_workspace(self.workspace).create(
            workspace=self.workspace, name=name
        )
        return Response(s.ProjectSerializer(project).data, status=201)

    @extend_schema(responses={200: s.ProjectSerializer, **_errors(401, 403, 404, 429)})
    def retrieve(self, request, project_id=None):
        project = self.get_queryset().filter(pk=project_id).first()
        if project is None:
            raise Http404
        return Response(s.ProjectSerializer(project).data)


class ShotFilterSerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class ShotViewSet(ApiViewSet):
    serializer_class = s.ShotSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Shot.objects.none()
        return Shot.objects.for_workspace(self.workspace)

    @extend_schema(parameters=[ShotFilterSerializer], responses={200: s.ShotSerializer(many=True)})
    def list(self, request):
        filters = ShotFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        shots = self.get_queryset()
        if filters.validated_data.get("project"):
            shots = shots.filter(project_id=filters.validated_data["project"])
        page = self.paginate_queryset(shots)
        return self.get_paginated_response(s.ShotSerializer(page, many=True).data)

    @extend_schema(responses={200: s.ShotSerializer, **_errors(401, 403, 404, 429)})
    def retrieve(self, request, shot_id=None):
        shot = self.get_queryset().filter(pk=shot_id).first()
        if shot is None:
            raise Http404
        return Response(s.ShotSerializer(shot).data)


class RoughCutFilterSerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    status = serializers.ChoiceField(choices=RoughCutStatus.choices, required=False)


class RoughCutViewSet(ApiViewSet):
    """Rough-cut exports: started on a project (`start_rough_cut`, as the studio's export
    button), rendered by the media worker, then read with signed links to each file."""

    serializer_class = s.RoughCutSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return RoughCut.objects.none()
        return RoughCut.objects.for_workspace(self.workspace).select_related("project")

    @extend_schema(
        parameters=[RoughCutFilterSerializer],
        responses={200: s.RoughCutSerializer(many=True), **_errors(400, 401, 403, 429)},
    )
    def list(self, request):
        filters = RoughCutFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        cuts = self.get_queryset()
        if f.get("project"):
            cuts = cuts.filter(project_id=f["project"])
        if f.get("status"):
            cuts = cuts.filter(status=f["status"])
        page = self.paginate_queryset(cuts)
        return self.get_paginated_response(s.RoughCutSerializer(page, many=True).data)

    @extend_schema(responses={200: s.RoughCutSerializer, **_errors(401, 403, 404, 429)})
    def retrieve(self, request, rough_cut_id=None):
        cut = self.get_queryset().filter(pk=rough_cut_id).first()
        if cut is None:
            raise Http404
        return Response(s.RoughCutSerializer(cut).data)

    @extend_schema(
        operation_id="projects_rough_cuts_create",
        tags=["rough-cuts"],
        description="Export the project's chosen takes (one per live shot, in storyboard "
        "order) as one MP4 and its timeline files, as the studio's export does. Answers the "
        "queued rough cut; poll its `url` until `status` is `succeeded` or `failed`.",
        request=s.RoughCutCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: s.RoughCutSerializer,
            409: OpenApiResponse(description="Idempotency-Key reused with another body."),
            **_errors(400, 401, 403, 404, 429),
        },
    )
    def create(self, request, project_id=None):
        project = Project.objects.for_workspace(self.workspace).filter(pk=project_id).first()
        if project is None:
            raise Http404
        key, print_, replayed = idempotency.begin(request, self.workspace)
        if replayed is not None:
            return replayed
        form = s.RoughCutCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                cut = start_rough_cut(
                    project, request.user, crossfade_ms=form.validated_data["crossfade_ms"]
                )
                response = Response(s.RoughCutSerializer(cut).data, status=201)
                if key:
                    # In the cut's transaction: a racer with the same key waits here, then
                    # rolls its cut back and answers the first response.
                    return idempotency.store(self.workspace, key, print_, response)
                return response
        except IntegrityError:
            if key and (replayed := idempotency.replay(self.workspace, key, print_)):
                return replayed
            raise


class UsageFilterSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=366, default=30)


class WalletViewSet(ApiViewSet):
    serializer_class = s.WalletSerializer

    @extend_schema(responses={200: s.WalletSerializer, **_errors(401, 403, 429)})
    def balance(self, request):
        wallet = ledger.get_wallet(self.workspace)
        return Response(
            {
                "balance": wallet.balance,
                "held": wallet.held,
                "available": ledger.available_credits(self.workspace),
            }
        )

    @extend_schema(responses={200: s.LotSerializer(many=True), **_errors(401, 403, 429)})
    def lots(self, request):
        lots = CreditLot.objects.for_workspace(self.workspace)
        page = self.paginate_queryset(lots)
        return self.get_paginated_response(s.LotSerializer(page, many=True).data)

    @extend_schema(responses={200: s.LedgerEntrySerializer(many=True), **_errors(401, 403, 429)})
    def ledger(self, request):
        entries = LedgerEntry.objects.for_workspace(self.workspace)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(s.LedgerEntrySerializer(page, many=True).data)

    @extend_schema(
        parameters=[UsageFilterSerializer],
        responses={200: s.UsageListSerializer, **_errors(400, 401, 403, 429)},
    )
    def usage(self, request):
        filters = UsageFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        zone = billing_time_zone()
        today = timezone.now().astimezone(zone).date()
        since = today - timedelta(days=filters.validated_data["days"] - 1)
        rows = (
            Take.objects.for_workspace(self.workspace)
            .filter(finished_at__date__gte=since, charged__gt=0)
            .annotate(day=TruncDate("finished_at", tzinfo=zone))
            .filter(day__gte=since)
            .values("day", "video_model__slug")
            .annotate(
                takes=Count("pk"),
                seconds=Sum("measured_duration"),
                credits=Sum("charged", filter=Q(charged__gt=0)),
            )
            .order_by("day", "video_model__slug")
        )
        usage = [
            {
                "day": row["day"],
                "model": row["video_model__slug"],
                "takes": row["takes"],
                "seconds": round(row["seconds"] or 0, 3),
                "credits": row["credits"] or 0,
            }
            for row in rows
        ]
        return Response(s.UsageListSerializer({"since": since, "usage": usage}).data)


class WebhookEndpointViewSet(ApiViewSet, mixins.DestroyModelMixin):
    serializer_class = s.WebhookEndpointSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        return WebhookEndpoint.objects.for_workspace(self.workspace)

    def get_object(self) -> WebhookEndpoint:
        endpoint = self.get_queryset().filter(pk=self.kwargs["endpoint_id"]).first()
        if endpoint is None:
            raise Http404
        return endpoint

    @extend_schema(responses={200: s.WebhookEndpointSerializer(many=True), **_errors(401, 403)})
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.WebhookEndpointSerializer(page, many=True).data)

    @extend_schema(responses={201: s.WebhookEndpointSerializer, **_errors(400, 401, 403, 429)})
    def create(self, request):
        form = s.WebhookEndpointSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        endpoint = WebhookEndpoint.objects.for_workspace(self.workspace).create(
            workspace=self.workspace, **form.validated_data
        )
        return Response(s.WebhookEndpointSerializer(endpoint).data, status=201)

    @extend_schema(responses={200: s.WebhookEndpointSerializer, **_errors(401, 403, 404, 429)})
    def retrieve(self, request, endpoint_id=None):
        return Response(s.WebhookEndpointSerializer(self.get_object()).data)

    @extend_schema(responses={200: s.WebhookEndpointSerializer, **_errors(400, 401, 403, 404)})
    def partial_update(self, request, endpoint_id=None):
        endpoint = self.get_object()
        form = s.WebhookEndpointSerializer(endpoint, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        extra = {}
        if form.validated_data.get("is_active"):
            extra = {"disabled_at": None, "failing_since": None}
        endpoint = form.save(**extra)
        return Response(s.WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None, **_errors(401, 403, 404, 429)})
    def destroy(self, request, endpoint_id=None):
        self.get_object().delete()
        return Response(status=204)

    @extend_schema(
        responses={200: s.WebhookDeliverySerializer(many=True), **_errors(401, 403, 404)}
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, endpoint_id=None):
        endpoint = self.get_object()
        deliveries = endpoint.deliveries.prefetch_related("attempt_log")
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(s.WebhookDeliverySerializer(page, many=True).data)


class WebhookDeliveryViewSet(ApiViewSet):
    serializer_class = s.WebhookDeliverySerializer

    def get_object(self) -> WebhookDelivery:
        if getattr(self, "swagger_fake_view", False):
            return None
        delivery = (
            WebhookDelivery.objects.for_workspace(self.workspace)
            .filter(pk=self.kwargs["delivery_id"])
            .prefetch_related("attempt_log")
            .first()
        )
        if delivery is None:
            raise Http404
        return delivery

    @extend_schema(responses={200: s.WebhookDeliverySerializer, **_errors(401, 403, 404, 429)})
    def retrieve(self, request, delivery_id=None):
        return Response(s.WebhookDeliverySerializer(self.get_object()).data)

    @extend_schema(
        request=None, responses={202: s.WebhookDeliverySerializer, **_errors(401, 403, 404, 429)}
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request, delivery_id=None):
        delivery = hooks.redeliver(self.get_object())
        return Response(s.WebhookDeliverySerializer(delivery).data, status=202)
