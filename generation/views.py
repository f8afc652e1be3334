"""The studio in the browser: the form with its live quote, takes, player, compare, projects.

Thin: parse input, call the actions in `submission`, `lifecycle` and `curation`, render.
Every lookup goes through `for_workspace(request.workspace)`; another workspace's take,
shot or project is a 404.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, F, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from accounts.models import Membership
from billing import ledger, payments, plans, pricing
from billing.models import CreditPackage
from config.media_links import signed_media_url
from config.throttling import submission_retry_after
from config.validation import POSTGRES_BIGINT_MAX

from . import digest
from . import shots as shot_actions
from .curation import choose_take, project_costs, set_favourite, shot_costs
from .downloads import download_name
from .lifecycle import TakeActionError, cancel_take
from .models import TERMINAL, Project, RoughCut, Shot, Take, TakeStatus, VideoModel
from .queue import queue_positions
from .roughcut import start_rough_cut
from .serializers import TakeSpecSerializer, validated
from .submission import (
    RESOLUTION_RANK,
    SubmissionError,
    TakeSpec,
    check_spec,
    finalize_resolution,
    finalize_take,
    frame_size,
    submit_takes,
)

GRID_SIZE = 24
COMPARE_MIN, COMPARE_MAX = 2, 4


def _workspace(request: HttpRequest):
    if request.workspace is None:
        raise Http404
    return request.workspace


def _take(request: HttpRequest, take_id: uuid.UUID) -> Take:
    take = (
        Take.objects.for_workspace(_workspace(request))
        .select_related("video_model", "shot", "shot__project")
        .filter(pk=take_id)
        .first()
    )
    if take is None:
        raise Http404
    return take


def _project(request: HttpRequest, project_id) -> Project:
    try:
        project_id = int(project_id)
    except (TypeError, ValueError) as exc:
        raise Http404 from exc
    if not 0 < project_id <= POSTGRES_BIGINT_MAX:
        raise Http404
    project = Project.objects.for_workspace(_workspace(request)).filter(pk=project_id).first()
    if project is None:
        raise Http404
    return project


def spec_from(data) -> tuple[TakeSpec, dict]:
    """A TakeSpec from the studio form's fields (a random seed unless one is fixed), and
    the other validated fields; raises SubmissionError naming the field at fault."""
    form = validated(TakeSpecSerializer(data=data))
    return form.spec(use_seed=data.get("seed_mode") == "fixed"), form.validated_data


def _printable(value: str) -> str:
    """A submitted value to show back in the form: without NUL, bounded."""
    return value.replace("\x00", "")[:20_000]


def model_options(video_model: VideoModel, plan) -> dict:
    """What the form offers for a model, with the plan's limits marked and explained."""
    plan_rank = RESOLUTION_RANK.get(plan.max_resolution, 0)
    return {
        "model": video_model,
        "resolutions": [
            {
                "value": r,
                "allowed": RESOLUTION_RANK.get(r, 99) <= plan_rank,
            }
            for r in video_model.resolutions
        ],
        "durations": [
            {"value": d, "allowed": d <= plan.max_duration} for d in video_model.durations
        ],
        "aspect_ratios": video_model.aspect_ratios,
        "fps_options": video_model.fps_options,
        "plan": plan,
        "counts": range(1, plan.max_takes_per_batch + 1),
    }


def _shot(request: HttpRequest, shot_id) -> Shot:
    try:
        shot_id = int(shot_id)
    except (TypeError, ValueError) as exc:
        raise Http404 from exc
    shot = (
        Shot.objects.for_workspace(_workspace(request))
        .select_related("project", "chosen_take")
        .filter(pk=shot_id)
        .first()
    )
    if shot is None:
        raise Http404
    return shot


def _initial(request: HttpRequest, models: list[VideoModel], shot: Shot | None) -> dict:
    """Form values: the shot's prompt and last settings (the form keeps them after every
    draw), a reused take's settings (`?from=<take>`), or defaults for a new shot."""
    initial = {
        "model": models[0].slug if models else "",
        "mode": pricing.Mode.STANDARD,
        "count": 1,
        "seed_mode": "random",
        "prompt": "",
        "negative_prompt": "",
    }
    if shot is not None:
        initial.update({k: v for k, v in (shot.settings or {}).items() if v not in (None, "")})
        initial.update(prompt=shot.prompt, negative_prompt=shot.negative_prompt)
    source_id = request.GET.get("from")
    if source_id:
        try:
            source = _take(request, uuid.UUID(source_id))
        except ValueError as exc:
            raise Http404 from exc
        inputs = source.inputs()
        initial.update(
            model=source.video_model.slug,
            prompt=inputs["prompt"],
            negative_prompt=inputs["negative_prompt"],
            resolution=(source.draft_of.resolution if source.draft_of else source.resolution),
            duration=source.duration_seconds,
            aspect_ratio=source.aspect_ratio,
            fps=source.fps,
            mode=source.mode,
            from_take=source,
        )
        if request.GET.get("seed"):
            initial.update(seed_mode="fixed", seed=source.seed)
    for key in ("model", "mode"):
        if request.GET.get(key):
            initial[key] = request.GET[key]
    return initial


def _live_projects(workspace):
    return Project.objects.for_workspace(workspace).filter(archived_at__isnull=True)


def _studio_context(
    request: HttpRequest,
    initial: dict,
    error: SubmissionError | None = None,
    shot: Shot | None = None,
):
    workspace = _workspace(request)
    plan = plans.plan_for(workspace)
    models = list(VideoModel.objects.filter(is_active=True))
    current = next((m for m in models if m.slug == initial.get("model")), None) or (
        models[0] if models else None
    )
    references = {}
    source = initial.get("from_take")
    inputs = source.inputs() if source is not None else None
    if inputs is None and shot is not None:
        inputs = {
            "reference_image": shot.reference_image,
            "last_frame_image": shot.last_frame_image,
        }
    if inputs:
        for key in ("reference_image", "last_frame_image"):
            if inputs[key]:
                references[key] = signed_media_url(inputs[key])
    project_id = request.GET.get("project") or request.POST.get("project")
    return {
        "models": models,
        "modes": pricing.Mode.choices,
        "plan": plan,
        "initial": initial,
        "options": model_options(current, plan) if current else None,
        "idempotency_key": uuid.uuid4().hex,
        "draw_key": uuid.uuid4().hex,
        "error": error,
        "packages": CreditPackage.objects.filter(is_active=True) if error else [],
        "projects": _live_projects(workspace).order_by("-is_inbox", "position", "name"),
        "selected_project": str(shot.project_id if shot else project_id or ""),
        "shot": shot,
        "references": references,
        "from_take": source,
        "payments_enabled": payments.enabled(),
    }


@login_required
def studio(request: HttpRequest) -> HttpResponse:
    """The generate form, inside a shot (`?shot=`) or starting one; a POST draws takes of
    that shot and comes back to it with the form as it was."""
    workspace = _workspace(request)
    shot = None
    shot_id = request.POST.get("shot") if request.method == "POST" else request.GET.get("shot")
    if shot_id:
        shot = _shot(request, shot_id)
    if request.method == "POST":
        wait = submission_retry_after(request)
        if wait:
            # Over the submission rate: say when to come back, write nothing.
            context = _studio_context(
                request,
                {key: _printable(request.POST.get(key, "")) for key in request.POST},
                error=SubmissionError(
                    _("Too many submissions; try again in %(n)d seconds.") % {"n": wait}
                ),
            )
            context.update(_grid_context(request, None))
            response = render(request, "generation/studio.html", context, status=429)
            response["Retry-After"] = str(wait)
            return response
        try:
            spec, fields = spec_from(request.POST)
            project = None
            if fields.get("project") and shot is None:
                project = _project(request, fields["project"])
            source = None
            if request.POST.get("from_take"):
                try:
                    source = _take(request, uuid.UUID(request.POST["from_take"]))
                except ValueError as exc:
                    raise Http404 from exc
            takes = submit_takes(
                workspace,
                request.user,
                spec,
                idempotency_key=fields["idempotency_key"],
                image=request.FILES.get("image"),
                project=project,
                last_frame=request.FILES.get("last_frame"),
                shot=shot,
                clear_image=request.POST.get("clear_image") == "1",
                clear_last_frame=request.POST.get("clear_last_frame") == "1",
                references_from=source,
            )
        except SubmissionError as exc:
            initial = {key: _printable(request.POST.get(key, "")) for key in request.POST}
            context = _studio_context(request, initial, error=exc, shot=shot)
            context.update(_grid_context(request, None, shot=shot))
            return render(request, "generation/studio.html", context, status=exc.status)
        messages.success(
            request,
            _("%(n)d take(s) submitted. They appear below as they render.") % {"n": len(takes)},
        )
        return redirect(f"{reverse('studio')}?shot={takes[0].shot_id}#takes")
    models = list(VideoModel.objects.filter(is_active=True))
    context = _studio_context(request, _initial(request, models, shot), shot=shot)
    context.update(_grid_context(request, None, shot=shot))
    return render(request, "generation/studio.html", context)


def _too_many_submissions(wait: int) -> HttpResponse:
    """Over the submission rate: a 429 saying when to come back; nothing was written."""
    message = _("Too many submissions; try again in %(n)d seconds.") % {"n": wait}
    response = HttpResponse(message, status=429, content_type="text/plain")
    response["Retry-After"] = str(wait)
    return response


@login_required
@require_POST
def shot_draw(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Draw again: the shot's last settings, prompt and references, with a new seed."""
    shot = _shot(request, shot_id)
    settings_ = dict(shot.settings or {})
    if not settings_ or not shot.prompt:
        messages.error(request, _("Draw this shot once with the form first."))
        return redirect(f"{reverse('studio')}?shot={shot.pk}")
    wait = submission_retry_after(request)
    if wait:
        return _too_many_submissions(wait)
    data = {**settings_, "prompt": shot.prompt, "negative_prompt": shot.negative_prompt}
    data.pop("seed", None)
    data["idempotency_key"] = request.POST.get("idempotency_key", "")
    try:
        spec, fields = spec_from(data)
        takes = submit_takes(
            _workspace(request),
            request.user,
            spec,
            idempotency_key=fields["idempotency_key"],
            shot=shot,
        )
    except SubmissionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("%(n)d take(s) submitted. They appear below as they render.") % {"n": len(takes)},
        )
    return redirect(f"{reverse('studio')}?shot={shot.pk}#takes")


@login_required
@require_safe
def studio_options(request: HttpRequest) -> HttpResponse:
    """The model-dependent inputs, swapped in when the model changes."""
    workspace = _workspace(request)
    try:
        slug = validated(TakeSpecSerializer(data={"model": request.GET.get("model", "")}))
    except SubmissionError as exc:
        raise Http404 from exc
    video_model = VideoModel.objects.filter(
        slug=slug.validated_data["model"], is_active=True
    ).first()
    if video_model is None:
        raise Http404
    initial = {key: _printable(request.GET.get(key, "")) for key in request.GET}
    response = render(
        request,
        "generation/_model_options.html",
        {"options": model_options(video_model, plans.plan_for(workspace)), "initial": initial},
    )
    response["HX-Trigger-After-Settle"] = "options-changed"
    return response


@login_required
@require_safe
def studio_quote(request: HttpRequest) -> HttpResponse:
    """The live quote beside the form: breakdown, total, balance after, or why not."""
    workspace = _workspace(request)
    available = ledger.available_credits(workspace)
    context: dict = {"available": available, "needs_prompt": False}
    try:
        spec, _fields = spec_from(request.GET)
        if not spec.prompt.strip():
            # Price what the settings would cost; the prompt is asked for separately.
            context["needs_prompt"] = True
            spec = replace(spec, prompt="-")
        spec, video_model = check_spec(
            workspace,
            spec,
            has_image=request.GET.get("has_image") == "1",
            has_last_frame=request.GET.get("has_last_frame") == "1",
        )
        quote = pricing.quote_for(
            workspace,
            video_model=video_model,
            resolution=spec.resolution,
            seconds=spec.duration,
            mode=spec.mode,
        )
    except SubmissionError as exc:
        context["problem"] = exc.message
        return render(request, "generation/_quote.html", context)
    except pricing.QuoteError as exc:
        context["problem"] = str(exc)
        return render(request, "generation/_quote.html", context)
    width, height = frame_size(spec.resolution, spec.aspect_ratio, video_model)
    context.update(
        quote_context(workspace, request.user, quote, spec.count, available),
        spec=spec,
        size=f"{width}×{height}",
        requested_resolution=request.GET.get("resolution", ""),
    )
    if spec.count > 1 or spec.mode == pricing.Mode.OFF_PEAK:
        # A long batch: say whether its summary will be e-mailed (a per-user setting).
        context["batch_digest"] = {"on": digest.wants_digest(request.user.pk)}
    return render(request, "generation/_quote.html", context)


def cap_warning(workspace, user, total: int) -> dict | None:
    """The member's monthly cap, if `total` more credits would cross it, and who can raise it."""
    membership = Membership.objects.filter(workspace=workspace, user=user).first()
    if membership is None or membership.monthly_spend_cap is None:
        return None
    spent = ledger.member_spent_this_month(workspace, user)
    cap = membership.monthly_spend_cap
    if spent + total <= cap:
        return None
    managers = (
        Membership.objects.filter(workspace=workspace, role__in=("owner", "admin"))
        .exclude(user=user)
        .select_related("user")
    )
    return {
        "cap": cap,
        "spent": spent,
        "left": max(0, cap - spent),
        "managers": ", ".join(m.user.email for m in managers),
    }


def quote_context(workspace, user, quote, count: int, available: int) -> dict:
    """What the live quote component shows (the studio and the finalize page share it)."""
    total = quote.total * count
    context = {
        "quote": quote,
        "count": count,
        "total": total,
        "available": available,
        "after": available - total,
        "short": total > available,
        "packages": CreditPackage.objects.filter(is_active=True) if total > available else [],
        "cap": cap_warning(workspace, user, total) if total else None,
        "payments_enabled": payments.enabled(),
    }
    if quote.mode == pricing.Mode.OFF_PEAK:
        span = pricing.off_peak_span()
        if span:
            context["off_peak"] = {
                "opens": span[0],
                "closes": span[1],
                "zone": str(span[0].tzinfo),
                "now": span[0] <= timezone.now(),
                "deadline": (
                    timezone.now() + timedelta(hours=settings.OFF_PEAK_DEADLINE_HOURS)
                ).astimezone(span[0].tzinfo),
            }
    return context


TAKE_FILTERS = ("status", "favourite", "chosen", "model", "mode", "final", "q")


def _grid_takes(
    request: HttpRequest, project: Project | None, shot: Shot | None = None
) -> list[Take]:
    queryset = Take.objects.for_workspace(_workspace(request)).select_related(
        "video_model", "shot", "shot__project"
    )
    if shot is not None:
        queryset = queryset.filter(shot=shot)
    elif project is not None:
        queryset = queryset.filter(shot__project=project)
    queryset = filter_takes(queryset, request.GET)
    return list(queryset.order_by("-created_at")[:GRID_SIZE])


def take_views(takes, positions: dict | None = None) -> list[dict]:
    """What a page shows of each take; queue places cost one query for all of them (pass
    `positions` from `queue_positions` when a page shows several groups of takes)."""
    takes = list(takes)
    if positions is None:
        positions = queue_positions(takes)
    return [take_view(take, positions.get(take.pk)) for take in takes]


def filter_takes(queryset, params):
    """The grid filters: status, favourite, chosen, model, mode, draft/final, prompt search;
    archived takes only when asked for."""
    if params.get("archived") == "1":
        queryset = queryset.filter(archived_at__isnull=False)
    else:
        queryset = queryset.filter(archived_at__isnull=True)
    if params.get("status") in TakeStatus.values:
        queryset = queryset.filter(status=params["status"])
    if params.get("favourite") == "1":
        queryset = queryset.filter(is_favourite=True)
    if params.get("chosen") == "1":
        queryset = queryset.filter(shot__chosen_take=F("pk"))
    if params.get("model"):
        queryset = queryset.filter(video_model__slug=params["model"])
    if params.get("mode") in pricing.Mode.values:
        queryset = queryset.filter(mode=params["mode"])
    if params.get("final") == "final":
        queryset = queryset.filter(draft_of__isnull=False)
    elif params.get("final") == "draft":
        queryset = queryset.filter(mode=pricing.Mode.DRAFT)
    if params.get("q", "").strip():
        words = params["q"].strip()[:200]
        queryset = queryset.filter(Q(prompt__icontains=words) | Q(shot__prompt__icontains=words))
    return queryset


def off_peak_wait(take: Take) -> dict | None:
    """For a waiting off-peak take: when it should start, and when it is given up on."""
    if take.mode != pricing.Mode.OFF_PEAK or take.status != TakeStatus.QUEUED:
        return None
    zone = pricing.billing_time_zone()
    now = timezone.now()
    opens = take.quote.get("next_off_peak_at")
    starts = max(now, datetime.fromisoformat(opens)) if opens else now
    return {
        "starts": starts.astimezone(zone),
        "now": starts <= now,
        "deadline": take.deadline.astimezone(zone) if take.deadline else None,
        "zone": str(zone),
    }


def take_view(take: Take, queue_position: int | None = None) -> dict:
    """What a page shows of a take: status, progress, queue place, media links, cost."""
    done = take.status == TakeStatus.SUCCEEDED
    in_flight = take.status not in TERMINAL
    return {
        "take": take,
        "in_flight": in_flight,
        # The node's latest look at the draw while it renders (diffusers nodes send them).
        "live_preview": (
            signed_media_url(take.live_preview) if in_flight and take.live_preview else ""
        ),
        "queue_position": queue_position,
        "off_peak_wait": off_peak_wait(take),
        "is_chosen": take.shot.chosen_take_id == take.pk,
        "poster": signed_media_url(take.output_poster) if done and take.output_poster else "",
        "preview": signed_media_url(take.output_preview) if done and take.output_preview else "",
        "video": signed_media_url(take.output_original) if done and take.output_original else "",
        "price": take.quote.get("total", 0),
        "mode_label": dict(pricing.Mode.choices).get(take.mode, take.mode),
        "free_failure": take.status in TERMINAL and not done,
    }


@login_required
@require_safe
def take_grid(request: HttpRequest) -> HttpResponse:
    """The takes grid partial, polled every 2 s while any take is in flight."""
    project = _project(request, request.GET["project"]) if request.GET.get("project") else None
    shot = _shot(request, request.GET["shot"]) if request.GET.get("shot") else None
    return render(request, "generation/_take_grid.html", _grid_context(request, project, shot=shot))


def _grid_context(request: HttpRequest, project: Project | None, shot: Shot | None = None) -> dict:
    cards = take_views(_grid_takes(request, project, shot))
    groups = []
    if shot is not None:
        # Takes grouped under the prompt version they were drawn with, newest first.
        for card in cards:
            take = card["take"]
            if not groups or groups[-1]["version"] != take.prompt_version:
                groups.append(
                    {
                        "version": take.prompt_version,
                        "prompt": take.inputs()["prompt"],
                        "current": take.prompt_version == shot.prompt_version,
                        "cards": [],
                    }
                )
            groups[-1]["cards"].append(card)
    query = {k: request.GET[k] for k in (*TAKE_FILTERS, "archived") if request.GET.get(k)}
    if shot is not None:
        query["shot"] = shot.pk
    elif project is not None:
        query["project"] = project.pk
    return {
        "cards": cards,
        "groups": groups,
        "polling": any(card["in_flight"] for card in cards),
        "project": project,
        "grid_query": urlencode(query),
        "filters": {k: request.GET.get(k, "") for k in (*TAKE_FILTERS, "archived")},
        "filter_models": VideoModel.objects.filter(is_active=True),
        "statuses": TakeStatus.choices,
        "modes": pricing.Mode.choices,
    }


@login_required
@require_safe
def take_detail(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    try:
        take = _take(request, take_id)
    except Http404:
        # A link to a take in another of the user's workspaces offers to switch there;
        # anyone else still gets a plain 404.
        elsewhere = (
            Take.objects.dangerously_unscoped()
            .filter(pk=take_id, workspace__memberships__user=request.user)
            .select_related("workspace")
            .first()
        )
        if elsewhere is None:
            raise
        return render(
            request,
            "generation/switch_to_take.html",
            {"other": elsewhere.workspace, "next": request.get_full_path()},
            status=409,
        )
    inputs = take.inputs()
    return render(
        request,
        "generation/take.html",
        {
            **take_views([take])[0],
            "shot": take.shot,
            "inputs": inputs,
            "input_frames": [
                (label, signed_media_url(inputs[key]))
                for key, label in (
                    ("reference_image", _("First frame")),
                    ("last_frame_image", _("Last frame")),
                )
                if inputs[key]
            ],
            "finalize_to": finalize_resolution(take),
        },
    )


@login_required
@require_safe
def take_status(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    """The status block of one take (polled on the take page while it is in flight)."""
    take = _take(request, take_id)
    if request.GET.get("card"):
        return render(request, "generation/_take_card.html", {"card": take_views([take])[0]})
    view = take_views([take])[0]
    response = render(request, "generation/_take_status.html", view)
    if not view["in_flight"] and request.headers.get("HX-Request"):
        # Done: reload the page so the player and the take's actions appear.
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_safe
def take_download(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    """Send the original through a short-lived signed link, under a readable name."""
    take = _take(request, take_id)
    if take.status != TakeStatus.SUCCEEDED or not take.output_original:
        raise Http404
    return redirect(signed_media_url(take.output_original, download_name=download_name(take)))


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _back(request: HttpRequest, take: Take) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("take_detail", take_id=take.pk)


def _take_state(take: Take) -> dict:
    take.refresh_from_db(fields=["is_favourite", "archived_at"])
    chosen = Shot.objects.for_workspace(take.workspace).filter(pk=take.shot_id)
    return {
        "id": str(take.pk),
        "favourite": take.is_favourite,
        "chosen": chosen.values_list("chosen_take_id", flat=True).first() == take.pk,
        "archived": take.archived_at is not None,
    }


@login_required
@require_POST
def take_choose(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    """Keep this take as its shot's chosen take (the lightbox's K asks for JSON)."""
    take = _take(request, take_id)
    try:
        choose_take(take)
    except TakeActionError as exc:
        if _wants_json(request):
            return JsonResponse({"error": str(exc)}, status=400)
        messages.error(request, str(exc))
    else:
        if _wants_json(request):
            return JsonResponse(_take_state(take))
        messages.success(request, _("This is now the shot's chosen take."))
    return _back(request, take)


@login_required
@require_POST
def take_favourite(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    take = _take(request, take_id)
    set_favourite(take, request.POST.get("favourite") == "1")
    if _wants_json(request):
        return JsonResponse(_take_state(take))
    return _back(request, take)


@login_required
@require_POST
def take_archive(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    """Hide a take from the grids (or show it again); its charge and ledger stay."""
    take = _take(request, take_id)
    try:
        shot_actions.set_take_archived(take, request.POST.get("archived", "1") == "1")
    except SubmissionError as exc:
        if _wants_json(request):
            return JsonResponse({"error": exc.message}, status=400)
        messages.error(request, exc.message)
    else:
        if _wants_json(request):
            return JsonResponse(_take_state(take))
        messages.success(
            request,
            _("Archived: hidden from the grids.") if take.archived_at else _("Back in the grids."),
        )
    return _back(request, take)


@login_required
@require_POST
def take_cancel(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    take = _take(request, take_id)
    try:
        cancel_take(take)
    except TakeActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Canceled. Its credits were released in full."))
    return _back(request, take)


@login_required
def take_finalize(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    """GET: the price of finalizing (the live quote component) and a confirm button;
    POST: finalize. Offered only when it renders a higher resolution than the draft."""
    draft = _take(request, take_id)
    if request.method == "POST":
        wait = submission_retry_after(request)
        if wait:
            return _too_many_submissions(wait)
        try:
            final = finalize_take(draft, request.user, idempotency_key=f"finalize:{draft.pk}")
        except SubmissionError as exc:
            messages.error(request, exc.message)
            return _back(request, draft)
        messages.success(
            request,
            _("Finalizing at %(res)s with the same seed. It becomes the shot's take when done.")
            % {"res": final.resolution},
        )
        return redirect("take_detail", take_id=final.pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    resolution = finalize_resolution(draft)
    workspace = _workspace(request)
    context: dict = {**take_view(draft), "shot": draft.shot, "resolution": resolution}
    if resolution is None:
        context["problem"] = _(
            "Finalizing would not raise the resolution: your plan renders this model at "
            "%(res)s at most, the draft's resolution."
        ) % {"res": draft.resolution}
    else:
        try:
            quote = pricing.quote_for(
                workspace,
                video_model=draft.video_model,
                resolution=resolution,
                seconds=draft.duration_seconds,
                mode=pricing.Mode.STANDARD,
            )
        except pricing.QuoteError as exc:
            context["problem"] = str(exc)
        else:
            width, height = frame_size(resolution, draft.aspect_ratio, draft.video_model)
            context.update(
                quote_context(
                    workspace, request.user, quote, 1, ledger.available_credits(workspace)
                ),
                size=f"{width}×{height}",
            )
    return render(
        request, "generation/finalize.html", context, status=400 if "problem" in context else 200
    )


@login_required
@require_safe
def compare(request: HttpRequest) -> HttpResponse:
    """2 to 4 takes side by side, playing in sync, each with Keep."""
    workspace = _workspace(request)
    try:
        ids = [uuid.UUID(value) for value in request.GET.getlist("take")]
    except ValueError as exc:
        raise Http404 from exc
    takes = list(
        Take.objects.for_workspace(workspace)
        .select_related("video_model", "shot")
        .filter(pk__in=ids)
    )
    if len(takes) != len(set(ids)):
        raise Http404
    error = ""
    if not COMPARE_MIN <= len(takes) <= COMPARE_MAX:
        error = _("Pick 2 to 4 finished takes to compare.")
    elif any(t.status != TakeStatus.SUCCEEDED for t in takes):
        error = _("Only finished takes can be compared.")
    takes.sort(key=lambda t: ids.index(t.pk))
    portrait = sum(1 for t in takes if t.height > t.width)
    return render(
        request,
        "generation/compare.html",
        {
            "cards": take_views(takes),
            "error": error,
            "layout": "portrait" if portrait * 2 >= len(takes) else "landscape",
        },
        status=400 if error else 200,
    )


def _form_error(request: HttpRequest, exc: SubmissionError) -> None:
    messages.error(request, exc.message)


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    """Projects in the creator's order; POST creates one (`name`) or reorders (`order`)."""
    workspace = _workspace(request)
    if request.method == "POST":
        try:
            if "order" in request.POST:
                shot_actions.reorder_projects(workspace, _order(request))
                return (
                    JsonResponse({"ok": True}) if _wants_json(request) else redirect("project_list")
                )
            project = shot_actions.create_project(workspace, request.POST.get("name", ""))
        except SubmissionError as exc:
            if _wants_json(request):
                return JsonResponse({"error": exc.message}, status=400)
            _form_error(request, exc)
            return redirect("project_list")
        messages.success(request, _("Project created. Add its first shot."))
        return redirect("project_detail", project_id=project.pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    archived = request.GET.get("archived") == "1"
    projects = list(
        Project.objects.for_workspace(workspace)
        .filter(archived_at__isnull=not archived)
        .annotate(shot_count=Count("shots", filter=Q(shots__archived_at__isnull=True)))
        .order_by("-is_inbox", "position", "-created_at")
    )
    costs = project_costs(workspace, projects)
    rows = [{"project": p, "cost": costs[p.pk], "shots": p.shot_count} for p in projects]
    return render(request, "generation/projects.html", {"rows": rows, "archived": archived})


def _order(request: HttpRequest) -> list[str]:
    raw = request.POST.get("order", "")
    if raw.startswith("["):
        try:
            return [str(v) for v in json.loads(raw)]
        except ValueError as exc:
            raise SubmissionError(_("The new order is not a list."), "order") from exc
    return [part for part in raw.split(",") if part.strip()]


@login_required
@require_POST
def project_edit(request: HttpRequest, project_id: int) -> HttpResponse:
    """Rename (`name`), archive or restore (`archived`=1/0), or add a shot (`new_shot`)."""
    project = _project(request, project_id)
    try:
        if "new_shot" in request.POST:
            shot = shot_actions.create_shot(project, request.POST.get("title", ""))
            return redirect(f"{reverse('studio')}?shot={shot.pk}")
        if "order" in request.POST:
            shot_actions.reorder_shots(project, _order(request))
            if _wants_json(request):
                return JsonResponse({"ok": True})
        elif "archived" in request.POST:
            shot_actions.set_project_archived(project, request.POST["archived"] == "1")
            messages.success(request, _("Archived.") if project.archived_at else _("Restored."))
            if project.archived_at:
                return redirect("project_list")
        else:
            shot_actions.rename_project(project, request.POST.get("name", ""))
            messages.success(request, _("Renamed."))
    except SubmissionError as exc:
        if _wants_json(request):
            return JsonResponse({"error": exc.message}, status=400)
        _form_error(request, exc)
    return redirect("project_detail", project_id=project.pk)


@login_required
@require_POST
def shot_edit(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Rename (`title`), archive or restore (`archived`), move up/down (`move`), or move to
    another project (`project`)."""
    shot = _shot(request, shot_id)
    try:
        if request.POST.get("move") in ("up", "down"):
            ids = list(
                shot.project.shots.filter(archived_at__isnull=True)
                .order_by("position", "created_at")
                .values_list("pk", flat=True)
            )
            index = ids.index(shot.pk) if shot.pk in ids else -1
            other = index + (-1 if request.POST["move"] == "up" else 1)
            if index >= 0 and 0 <= other < len(ids):
                ids[index], ids[other] = ids[other], ids[index]
                shot_actions.reorder_shots(shot.project, ids)
        elif "archived" in request.POST:
            shot_actions.set_shot_archived(shot, request.POST["archived"] == "1")
            messages.success(request, _("Archived.") if shot.archived_at else _("Restored."))
        elif request.POST.get("project"):
            target = _project(request, request.POST["project"])
            shot_actions.move_shot(shot, target)
            messages.success(request, _("Moved to %(project)s.") % {"project": target.name})
        else:
            shot_actions.rename_shot(shot, request.POST.get("title", ""))
            messages.success(request, _("Renamed."))
    except SubmissionError as exc:
        _form_error(request, exc)
    return _back_to(request, "project_detail", project_id=shot.project_id)


def _back_to(request: HttpRequest, name: str, **kwargs) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(name, **kwargs)


def storyboard_rows(workspace, project: Project) -> list[dict]:
    """The project's live shots in order: chosen take's poster, draws, credits spent."""
    shots = list(
        Shot.objects.for_workspace(workspace)
        .filter(project=project, archived_at__isnull=True)
        .select_related("chosen_take", "chosen_take__video_model")
        .annotate(draws=Count("takes"))
        .order_by("position", "created_at")
    )
    costs = shot_costs(workspace, shots)
    rows = []
    for shot in shots:
        chosen = shot.chosen_take
        rows.append(
            {
                "shot": shot,
                "draws": shot.draws,
                "cost": costs[shot.pk],
                "chosen": chosen,
                "poster": signed_media_url(chosen.output_poster)
                if chosen is not None and chosen.output_poster
                else "",
            }
        )
    return rows


@login_required
@require_safe
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    """The storyboard: shots in order, drag to reorder, the rough cut, the project's takes."""
    workspace = _workspace(request)
    project = _project(request, project_id)
    rows = storyboard_rows(workspace, project)
    context = {
        "project": project,
        "rows": rows,
        "total": project_costs(workspace, [project])[project.pk],
        "missing": sum(1 for row in rows if row["chosen"] is None),
        "rough_cuts": list(RoughCut.objects.for_workspace(workspace).filter(project=project)[:3]),
        "other_projects": _live_projects(workspace).exclude(pk=project.pk),
        "archived_shots": Shot.objects.for_workspace(workspace)
        .filter(project=project, archived_at__isnull=False)
        .order_by("title"),
    }
    context.update(_grid_context(request, project))
    return render(request, "generation/project.html", context)


@login_required
@require_POST
def rough_cut_start(request: HttpRequest, project_id: int) -> HttpResponse:
    """Export the storyboard's chosen takes as one MP4 and an OpenTimelineIO timeline."""
    project = _project(request, project_id)
    try:
        crossfade = int(request.POST.get("crossfade_ms") or 0)
    except ValueError:
        crossfade = -1
    try:
        cut = start_rough_cut(project, request.user, crossfade_ms=crossfade)
    except SubmissionError as exc:
        messages.error(request, exc.message)
        return redirect("project_detail", project_id=project.pk)
    messages.success(request, _("Rendering the rough cut. It appears below when ready."))
    return redirect(f"{reverse('project_detail', args=[project.pk])}#rough-cut-{cut.pk}")


def _rough_cut(request: HttpRequest, rough_cut_id: uuid.UUID) -> RoughCut:
    cut = (
        RoughCut.objects.for_workspace(_workspace(request))
        .select_related("project")
        .filter(pk=rough_cut_id)
        .first()
    )
    if cut is None:
        raise Http404
    return cut


@login_required
@require_safe
def rough_cut_status(request: HttpRequest, rough_cut_id: uuid.UUID) -> HttpResponse:
    """One rough cut's row (polled while it renders)."""
    cut = _rough_cut(request, rough_cut_id)
    return render(request, "generation/_rough_cut.html", {"cut": cut})


@login_required
@require_safe
def rough_cut_download(request: HttpRequest, rough_cut_id: uuid.UUID, kind: str) -> HttpResponse:
    """The MP4 (`video`) or a timeline (`timeline` .otio, `edl`, `fcpxml`), by signed link."""
    cut = _rough_cut(request, rough_cut_id)
    name = cut.stored_files().get(kind)
    if not name:
        raise Http404
    return redirect(signed_media_url(name, download_name=cut.download_name(kind)))
