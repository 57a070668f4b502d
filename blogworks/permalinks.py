"""A post's addresses: its permalink (/2024/Sep/25/slug/: its day, and a slug no post of any kind
uses that day, made from its title with -2, -3 ... when taken) and its secret preview link.

`Permalinked` is a mixin for the post models: each has `kind`, `created`, `slug`,
`slug_source_field`, `preview_token`, `LAST_DAY` (the first day a post cannot have) and `kinds()`, every post model (they share one space of
permalinks). The importer makes slugs with the same `first_free_slug`. This module never imports
linkblog.
"""

import secrets
from datetime import timedelta, timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.text import slugify


class Permalinked:
    """A slug unique on the post's day across every kind, and a revocable secret preview link."""

    def same_day_posts(self, model):
        """Posts of `model` on this post's (UTC) day, other than this one."""
        start = self.created.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        posts = model.objects.filter(created__gte=start, created__lt=start + timedelta(days=1))
        if model is type(self) and self.pk:
            posts = posts.exclude(pk=self.pk)
        return posts

    def slug_base(self):
        """The slug this post's title gives, before any -2, -3 that keeps it unique on its day."""
        return slugify(getattr(self, self.slug_source_field) or "")[:56].strip("-") or self.kind

    @staticmethod
    def first_free_slug(base, is_taken):
        """`base`, or else base-2, base-3 ...: the first that `is_taken(slug)` says is free."""
        slug, number = base, 2
        while is_taken(slug):
            slug, number = f"{base}-{number}", number + 1
        return slug

    def make_unique_slug(self):
        """A slug from the title that no post of any kind uses on the same day."""
        base, taken = self.slug_base(), set()
        for model in self.kinds():
            taken.update(self.same_day_posts(model).filter(slug__startswith=base).values_list("slug", flat=True))
        return self.first_free_slug(base, taken.__contains__)

    def fill_in_defaults(self):
        """The date and slug a post gets when its author leaves them empty."""
        if self.created is None:
            self.created = timezone.now()
        if not self.slug:
            self.slug = self.make_unique_slug()

    def clean(self):
        super().clean()
        if self.created and self.created >= self.LAST_DAY:  # slugs are unique per day, and it has no next
            raise ValidationError({"created": "A post's day must end before the year 10000."})
        self.refuse_a_taken_permalink()
        self.fill_in_defaults()

    def validate_constraints(self, exclude=None):
        # clean() makes an empty slug; when it refused the post first (its date), the slug is still
        # empty, and "has_slug is violated" would only confuse the real error.
        if not self.slug:
            exclude = {*(exclude or ()), "slug"}
        super().validate_constraints(exclude)

    def refuse_a_taken_permalink(self):
        """A post's URL is its day and slug, whatever its kind: two posts of any kinds cannot share it."""
        if not self.slug:
            return  # one is made later, free on its day
        for model in self.kinds():
            if self.same_day_posts(model).filter(slug=self.slug).exists():
                raise ValidationError({"slug": f"Another {model.kind} on this day already uses the slug “{self.slug}”."})

    def share_preview(self):
        """Give the post a new secret preview link (any older one stops working)."""
        self.preview_token = secrets.token_urlsafe(24)
        type(self).objects.filter(pk=self.pk).update(preview_token=self.preview_token)

    def revoke_preview(self):
        self.preview_token = None
        type(self).objects.filter(pk=self.pk).update(preview_token=None)
