"""What a submission may say, checked at the edge (see `config.validation`).

The JSON API, the studio form (POST) and the live quote (GET) all read a `TakeSpec`
through `TakeSpecSerializer`, so they accept and refuse the same input. Limits that depend
on the model or the plan (prompt length per model, durations, resolutions, batch size) are
checked after this, by `submission.check_spec` / `submit_takes`.
"""

from __future__ import annotations

from rest_framework import serializers

from billing import pricing
from config.validation import (
    POSTGRES_BIGINT_MAX,
    StrictCharField,
    StrictIntegerField,
    serializer_errors,
)

from .submission import MAX_SEED, SubmissionError, TakeSpec

# No model takes prompts longer than this; each model's own limit is checked later.
PROMPT_MAX_CHARS = 10_000
IDEMPOTENCY_KEY_MAX_CHARS = 200


class TakeSpecSerializer(serializers.Serializer):
    model = StrictCharField(max_length=80, required=False, allow_blank=True, default="")
    prompt = StrictCharField(
        max_length=PROMPT_MAX_CHARS, required=False, allow_blank=True, default="",
        trim_whitespace=False,
    )  # fmt: skip
    negative_prompt = StrictCharField(
        max_length=PROMPT_MAX_CHARS, required=False, allow_blank=True, default="",
        trim_whitespace=False,
    )  # fmt: skip
    resolution = StrictCharField(max_length=16, required=False, allow_blank=True, default="")
    aspect_ratio = StrictCharField(max_length=16, required=False, allow_blank=True, default="")
    mode = StrictCharField(max_length=16, required=False, allow_blank=True, default="")
    duration = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=3600)
    fps = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=240)
    count = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=1000)
    seed = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_SEED)
    project = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=POSTGRES_BIGINT_MAX
    )
    idempotency_key = StrictCharField(
        max_length=IDEMPOTENCY_KEY_MAX_CHARS, required=False, allow_blank=True, default=""
    )

    def to_internal_value(self, data):
        # HTML forms send "" for an untouched number input: that means "not given".
        if hasattr(data, "getlist"):
            data = {
                key: data.get(key)
                for key in data
                if not (key in self.fields and isinstance(self.fields[key], StrictIntegerField))
                or data.get(key) != ""
            }
        return super().to_internal_value(data)

    def spec(self, *, use_seed: bool = True) -> TakeSpec:
        data = self.validated_data
        return TakeSpec(
            model=data["model"],
            prompt=data["prompt"],
            negative_prompt=data["negative_prompt"],
            resolution=data["resolution"],
            duration=data.get("duration") or 0,
            aspect_ratio=data["aspect_ratio"],
            fps=data.get("fps"),
            count=data.get("count") or 1,
            mode=data["mode"] or pricing.Mode.STANDARD,
            seed=data.get("seed") if use_seed else None,
        )


class FinalizeSerializer(serializers.Serializer):
    resolution = StrictCharField(max_length=16, required=False, allow_blank=True, default="")
    idempotency_key = StrictCharField(
        max_length=IDEMPOTENCY_KEY_MAX_CHARS, required=False, allow_blank=True, default=""
    )


def validated(serializer: serializers.Serializer) -> serializers.Serializer:
    """The serializer, valid; otherwise a SubmissionError naming the first field at fault
    (what the studio pages show)."""
    if not serializer.is_valid():
        message, field, _errors = serializer_errors(serializer.errors)
        raise SubmissionError(message, field)
    return serializer


def idempotency_key_from(header: str | None, body_key: str) -> str:
    """The Idempotency-Key header, else the body's; held to the same rules as body fields."""
    if not header:
        return body_key
    return validated(FinalizeSerializer(data={"idempotency_key": header})).validated_data[
        "idempotency_key"
    ]
