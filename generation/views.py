"""The studio in the browser: the form with its live quote, takes, player, compare, projects.

Thin: parse input, call the actions in `submission`, `lifecycle` and `curation`, render.
Every lookup goes through `for_workspace(request.workspace)`; another workspace's take,
shot or project is a 404.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from billing import ledger, plans, pricing
from billing.models import CreditPackage
from workers.media import signed_media_url

from .curation import choose_take, project_costs, set_favourite, shot_costs
from .lifecycle import TakeActionError, cancel_take
from .models import TERMINAL, Project, Shot, Take, TakeStatus, VideoModel
from .queue import queue_positions
from .submission import (
    RESOLUTION_RANK,
    SubmissionError,
    TakeSpec,
    check_spec,
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
    project = Project.objects.for_workspace(_workspace(request)).filter(pk=project_id).first()
    if project is None:
        raise Http404
    return project


def _int(data, name: str, default: int | None = None) -> int | None:
    raw = data.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise SubmissionError(_("Enter a whole number."), name) from exc


def spec_from(data) -> TakeSpec:
    """A TakeSpec from the studio form's fields (a random seed unless one is fixed)."""
    seed = _int(data, "seed") if data.get("seed_mode") == "fixed" else None
    return TakeSpec(
        model=str(data.get("model", "")),
        prompt=str(data.get("prompt", "")),
        negative_prompt=str(data.get("negative_prompt", "")),
        resolution=str(data.get("resolution", "")),
        duration=_int(data, "duration", 0),
        aspect_ratio=str(data.get("aspect_ratio", "")),
        fps=_int(data, "fps"),
        count=_int(data, "count", 1),
        mode=str(data.get("mode") or pricing.Mode.STANDARD),
        seed=seed,
    )


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


def _initial(request: HttpRequest, models: list[VideoModel]) -> dict:
    """Form values: defaults, or a take's settings when reusing them (`?from=<take>`)."""
    initial = {
        "model": models[0].slug if models else "",
        "mode": pricing.Mode.STANDARD,
        "count": 1,
        "seed_mode": "random",
        "prompt": "",
        "negative_prompt": "",
    }
    source_id = request.GET.get("from")
    if source_id:
        try:
            source = _take(request, uuid.UUID(source_id))
        except ValueError as exc:
            raise Http404 from exc
        initial.update(
            model=source.video_model.slug,
            prompt=source.shot.prompt,
            negative_prompt=source.shot.negative_prompt,
            resolution=source.resolution,
            duration=source.duration_seconds,
            aspect_ratio=source.aspect_ratio,
            fps=source.fps,
            mode=source.mode,
        )
        if request.GET.get("seed"):
            initial.update(seed_mode="fixed", seed=source.seed)
    for key in ("model", "mode"):
        if request.GET.get(key):
            initial[key] = request.GET[key]
    return initial


def _studio_context(request: HttpRequest, initial: dict, error: SubmissionError | None = None):
    workspace = _workspace(request)
    plan = plans.plan_for(workspace)
    models = list(VideoModel.objects.filter(is_active=True))
    current = next((m for m in models if m.slug == initial.get("model")), None) or (
        models[0] if models else None
    )
    return {
        "models": models,
        "modes": pricing.Mode.choices,
        "plan": plan,
        "initial": initial,
        "options": model_options(current, plan) if current else None,
        "idempotency_key": uuid.uuid4().hex,
        "error": error,
        "packages": CreditPackage.objects.filter(is_active=True) if error else [],
        "projects": Project.objects.for_workspace(workspace).order_by("-is_inbox", "name"),
    }


@login_required
def studio(request: HttpRequest) -> HttpResponse:
    """The generate form; a POST submits takes and returns to the grid."""
    workspace = _workspace(request)
    if request.method == "POST":
        try:
            project = None
            if request.POST.get("project"):
                project = _project(request, request.POST["project"])
            takes = submit_takes(
                workspace,
                request.user,
                spec_from(request.POST),
                idempotency_key=request.POST.get("idempotency_key", ""),
                image=request.FILES.get("image"),
                project=project,
                last_frame=request.FILES.get("last_frame"),
            )
        except SubmissionError as exc:
            initial = {key: request.POST.get(key, "") for key in request.POST}
            context = _studio_context(request, initial, error=exc)
            context.update(_grid_context(request, None))
            return render(request, "generation/studio.html", context, status=exc.status)
        messages.success(
            request,
            _("%(n)d take(s) submitted. They appear below as they render.") % {"n": len(takes)},
        )
        # Back to the form with the same model and mode, the new takes below it.
        query = urlencode({"model": takes[0].video_model.slug, "mode": takes[0].mode})
        return redirect(f"{reverse('studio')}?{query}#takes")
    models = list(VideoModel.objects.filter(is_active=True))
    context = _studio_context(request, _initial(request, models))
    context.update(_grid_context(request, None))
    return render(request, "generation/studio.html", context)


@login_required
@require_safe
def studio_options(request: HttpRequest) -> HttpResponse:
    """The model-dependent inputs, swapped in when the model changes."""
    workspace = _workspace(request)
    video_model = VideoModel.objects.filter(slug=request.GET.get("model"), is_active=True).first()
    if video_model is None:
        raise Http404
    initial = {key: request.GET.get(key, "") for key in request.GET}
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
        spec = spec_from(request.GET)
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
    total = quote.total * spec.count
    width, height = frame_size(spec.resolution, spec.aspect_ratio, video_model)
    context.update(
        quote=quote,
        spec=spec,
        size=f"{width}×{height}",
        total=total,
        after=available - total,
        short=total > available,
        packages=CreditPackage.objects.filter(is_active=True) if total > available else [],
    )
    return render(request, "generation/_quote.html", context)


def _grid_takes(request: HttpRequest, project: Project | None) -> list[Take]:
    queryset = Take.objects.for_workspace(_workspace(request)).select_related("video_model", "shot")
    if project is not None:
        queryset = queryset.filter(shot__project=project)
    return list(queryset.order_by("-created_at")[:GRID_SIZE])


def take_views(takes, positions: dict | None = None) -> list[dict]:
    """What a page shows of each take; queue places cost one query for all of them (pass
    `positions` from `queue_positions` when a page shows several groups of takes)."""
    takes = list(takes)
    if positions is None:
        positions = queue_positions(takes)
    return [take_view(take, positions.get(take.pk)) for take in takes]


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
    return render(request, "generation/_take_grid.html", _grid_context(request, project))


def _grid_context(request: HttpRequest, project: Project | None) -> dict:
    cards = take_views(_grid_takes(request, project))
    return {
        "cards": cards,
        "polling": any(card["in_flight"] for card in cards),
        "project": project,
    }


@login_required
@require_safe
def take_detail(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    take = _take(request, take_id)
    return render(
        request,
        "generation/take.html",
        {
            **take_views([take])[0],
            "shot": take.shot,
            "is_chosen": take.shot.chosen_take_id == take.pk,
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
    """Send the original through a short-lived signed link."""
    take = _take(request, take_id)
    if take.status != TakeStatus.SUCCEEDED or not take.output_original:
        raise Http404
    return redirect(signed_media_url(take.output_original))


def _back(request: HttpRequest, take: Take) -> HttpResponse:
    return redirect("take_detail", take_id=take.pk)


@login_required
@require_POST
def take_choose(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    take = _take(request, take_id)
    try:
        choose_take(take)
    except TakeActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("This is now the shot's chosen take."))
    return _back(request, take)


@login_required
@require_POST
def take_favourite(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    take = _take(request, take_id)
    set_favourite(take, request.POST.get("favourite") == "1")
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
@require_POST
def take_finalize(request: HttpRequest, take_id: uuid.UUID) -> HttpResponse:
    draft = _take(request, take_id)
    try:
        final = finalize_take(draft, request.user, idempotency_key=f"finalize:{draft.pk}")
    except SubmissionError as exc:
        messages.error(request, exc.message)
        return _back(request, draft)
    messages.success(request, _("Finalizing at full resolution with the same seed."))
    return redirect("take_detail", take_id=final.pk)


@login_required
@require_safe
def compare(request: HttpRequest) -> HttpResponse:
    """2 to 4 takes side by side, playing in sync."""
    workspace = _workspace(request)
    try:
        ids = [uuid.UUID(value) for value in request.GET.getlist("take")]
    except ValueError as exc:
        raise Http404 from exc
    takes = list(
        Take.objects.for_workspace(workspace).select_related("video_model").filter(pk__in=ids)
    )
    if len(takes) != len(set(ids)):
        raise Http404
    error = ""
    if not COMPARE_MIN <= len(takes) <= COMPARE_MAX:
        error = _("Pick 2 to 4 finished takes to compare.")
    elif any(t.status != TakeStatus.SUCCEEDED for t in takes):
        error = _("Only finished takes can be compared.")
    takes.sort(key=lambda t: ids.index(t.pk))
    return render(
        request,
        "generation/compare.html",
        {"cards": take_views(takes), "error": error},
        status=400 if error else 200,
    )


@login_required
@require_safe
def project_list(request: HttpRequest) -> HttpResponse:
    workspace = _workspace(request)
    projects = list(Project.objects.for_workspace(workspace).order_by("-is_inbox", "name"))
    costs = project_costs(workspace, projects)
    rows = [{"project": p, "cost": costs[p.pk], "shots": p.shots.count()} for p in projects]
    return render(request, "generation/projects.html", {"rows": rows})


@login_required
@require_safe
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    workspace = _workspace(request)
    project = _project(request, project_id)
    takes = Take.objects.for_workspace(workspace).select_related("video_model")
    shots = list(
        Shot.objects.for_workspace(workspace)
        .filter(project=project)
        .prefetch_related(Prefetch("takes", queryset=takes))
        .order_by("-created_at")
    )
    costs = shot_costs(workspace, shots)
    positions = queue_positions([take for shot in shots for take in shot.takes.all()])
    rows = [
        {
            "shot": shot,
            "cost": costs[shot.pk],
            "cards": take_views(shot.takes.all(), positions),
        }
        for shot in shots
    ]
    return render(
        request,
        "generation/project.html",
        {"project": project, "rows": rows, "total": sum(costs.values())},
    )
