"""allauth, adjusted: failed sign-ins count per account *and* client address."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter

from config.throttling import client_ip


class AccountAdapter(DefaultAccountAdapter):
    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        """allauth locks an account after `login_failed`'s per-key limit; keyed by the
        address alone, anyone could lock a real user out by failing on purpose. Keyed by
        address and client IP, a stranger only locks themselves out (the per-IP limit
        still caps each client across accounts)."""
        return (
            f"{super()._get_login_attempts_cache_key(request, **credentials)}@{client_ip(request)}"
        )
