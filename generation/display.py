"""Why a take failed, as the creator reads it, in their language.

`Take.error` is stored in English: the API (`/api/v1`, `/v1`) and webhooks return it as
stored, for machines and for support. Pages translate it when they show it, the way
`billing.display` translates ledger reasons:

- the sentences the platform writes itself (the lifecycle, the dispatcher, the sweeper,
  settlement and the backends' own framing) are recognised by their fixed shapes and
  translated with their values; a reason inside a framing ("Gave up after 3 attempts:
  …") is read the same way, so a nested platform sentence is translated too;
- what a node or a provider said (their error text, a ComfyUI exception, a provider's
  moderation message) is shown as they wrote it, inside the translated framing.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext, gettext_noop

from config.stored_text import Shape, translate

# Written by the platform in English; stored as written, translated when shown.
CANCELED = gettext_noop("Canceled.")
NOT_STARTED = gettext_noop("Not started before its off-peak deadline.")


def _where(value: str) -> str:
    """The moderating party: a provider's name as named, "the node"/"the backend" translated."""
    return {"the node": gettext("the node"), "the backend": gettext("the backend")}.get(
        value, value
    )


def _status(value: str) -> str:
    return {"failed": gettext("failed"), "canceled": gettext("canceled")}.get(value, value)


# The stored errors the platform writes (`config.stored_text.Shape`).
_ERRORS: list[Shape] = [
    (re.compile(re.escape(CANCELED)), {}, lambda: gettext(CANCELED)),
    (re.compile(re.escape(NOT_STARTED)), {}, lambda: gettext(NOT_STARTED)),
    (
        re.compile(r"Gave up after (?P<n>\d+) attempts: (?P<reason>.*)", re.S),
        {"reason": lambda v: take_error(v)},
        lambda: gettext("Gave up after %(n)s attempts: %(reason)s"),
    ),
    (
        re.compile(r"Blocked by (?P<where>.+?)'s moderation: (?P<detail>.*)", re.S),
        {"where": _where},
        lambda: gettext("Blocked by %(where)s's moderation: %(detail)s"),
    ),
    (
        re.compile(r"The provider reported the job (?P<status>failed|canceled)\."),
        {"status": _status},
        lambda: gettext("The provider reported the job %(status)s."),
    ),
    (
        re.compile(r"The node reported the prediction (?P<status>failed|canceled)\."),
        {"status": _status},
        lambda: gettext("The node reported the prediction %(status)s."),
    ),
    (
        re.compile(r"The provider reported a failure\."),
        {},
        lambda: gettext("The provider reported a failure."),
    ),
    (
        re.compile(r"The node reported an output it never uploaded\."),
        {},
        lambda: gettext("The node reported an output it never uploaded."),
    ),
    (
        re.compile(r"The backend reported success without an output\."),
        {},
        lambda: gettext("The backend reported success without an output."),
    ),
    (
        re.compile(r"The output is not a playable video: (?P<detail>.*)", re.S),
        {},
        lambda: gettext("The output is not a playable video: %(detail)s"),
    ),
    (
        re.compile(r"Could not copy the output from (?P<provider>.+?): (?P<detail>.*)", re.S),
        {},
        lambda: gettext("Could not copy the output from %(provider)s: %(detail)s"),
    ),
    (
        re.compile(r"The GPU node refused the request \((?P<status>\d+)\): (?P<detail>.*)", re.S),
        {},
        lambda: gettext("The GPU node refused the request (%(status)s): %(detail)s"),
    ),
    (
        re.compile(r"Interrupted on the ComfyUI server\."),
        {},
        lambda: gettext("Interrupted on the ComfyUI server."),
    ),
    (
        re.compile(r"The ComfyUI workflow saved no video\."),
        {},
        lambda: gettext("The ComfyUI workflow saved no video."),
    ),
    (
        re.compile(r"(?P<provider>Kling|Replicate|Runway) reported success without an output\."),
        {},
        lambda: gettext("%(provider)s reported success without an output."),
    ),
    (
        re.compile(r"The reference image is not valid base64\."),
        {},
        lambda: gettext("The reference image is not valid base64."),
    ),
    # A provider's name before a reason (the lifecycle prefixes it): the name as named,
    # the reason read again. Last, so that the fixed sentences above win.
    (
        re.compile(r"(?P<provider>[^:\n]{1,80}): (?P<reason>The provider reported .*)", re.S),
        {"reason": lambda v: take_error(v)},
        lambda: gettext("%(provider)s: %(reason)s"),
    ),
]


def take_error(error: str) -> str:
    """A stored take error in the reader's language (a node's or provider's words as written)."""
    return translate(error, _ERRORS)
