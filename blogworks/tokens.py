"""API tokens: made at random, shown once, stored only as their SHA-256 hash, and their last use
recorded without ever holding up a request.

`IssuedToken` is a mixin for the token model (fields `user`, `name`, `token_hash`, `last_used_at`).
"""

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from . import database

RECORD_USE_EVERY = timedelta(minutes=1)


class IssuedToken:
    """Issuing a token, finding it by its hash, and recording its use."""

    @staticmethod
    def hash(raw_token):
        return hashlib.sha256(raw_token.encode("utf-8", "replace")).hexdigest()

    @classmethod
    def issue(cls, user, name=""):
        """Create a token for `user` and return its raw value: the only time it is ever known."""
        raw_token = "lb_" + secrets.token_urlsafe(32)
        cls.objects.create(user=user, name=name, token_hash=cls.hash(raw_token))
        return raw_token

    def mark_used(self):
        """Record use, writing at most once a minute per token. Bookkeeping: when another writer holds
        the database it gives up at once (the next use records it), so a read never fails for it."""
        now = timezone.now()
        if self.last_used_at is not None and now - self.last_used_at <= RECORD_USE_EVERY:
            return
        if database.unless_busy(lambda: type(self).objects.filter(pk=self.pk).update(last_used_at=now)):
            self.last_used_at = now
