"""
linkblog: a personal link blog, declared in one nanodjango file.

Three kinds of post (entries, blogmarks and quotations), all tagged, mixed together on the home
page and on every tag page, newest first. This file declares what a reader and a writer meet; the
machinery behind it (search engine, import formats, page cache, convert plugin) is the blogworks
package beside it, which never imports this file.

Read it top to bottom; each section starts with a `# --- Name` line:

    Settings        the environment decides everything a deployment changes
    Models          Tag, and Entry / Blogmark / Quotation on one abstract Post: each kind says
                    what it knows (fields, label, search fields, import keys, feed) once, here;
                    what every post does comes from mixins (blogworks/permalinks.py, postcontent.py,
                    linkstore.py, syndication.py); API tokens (blogworks/tokens.py); the listing
                    store listings and archives read (Listed, ListedTag, Tally, MonthTally,
                    PairTally), kept in step by the signal handlers (blogworks/upkeep.py); the
                    fediverse's: the actor's key, followers, replies, mentions (their lookups:
                    blogworks/moderation.py)
    Admin           where the author writes (its shared pieces: blogworks/writing.py, linkadmin.py,
                    moderation.py)
    Pages           home, the tag page (and combinations), permalinks, template filters (the tags URL
                    converter and the 301s and 400s before views: blogworks/addresses.py; the stored
                    cards listings show: blogworks/cards.py)
    Feeds           Atom for everything, each kind, each tag (entries, generator, paging: blogworks/feeds.py)
    Archives        years, months, days (dates in URLs: blogworks/dates.py)
    Discovery       tag cloud, random post, sitemap, robots.txt
    Search page     /search/ with facets (the engine: blogworks/search.py)
    Fediverse       WebFinger, the blog's ActivityPub actor, inbox, outbox, Webmention endpoint
                    (the inbox's work, post_at and the background jobs: blogworks/federation.py)
    API             /api/ with django-ninja: schemas and endpoints for read, write, tags, tokens
                    (auth, permissions, errors, field types, filters, /api/items' rows and saving:
                    blogworks/api.py)
    Serving         the WSGI handler built once per worker; the benchmark's hello-world page
    Admin tools     import, export and the bookmarklet (forms, running them, permission checks:
                    blogworks/admintools.py)
    Commands        `python linkblog.py token|import|export|check-links|serve-production|worker`, the entry point
                    (arguments, and the work of import, export and check-links: blogworks/cli.py)

Templates live in templates/ (one base, one partial per kind of post), the stylesheet in static/,
the migrations in migrations/.

    nanodjango run linkblog.py          # development server, migrates first
"""

import json
import os
import random
import re
import sys
from datetime import date, datetime, timedelta, timezone as dt_timezone
from functools import lru_cache, partial
from pathlib import Path
from typing import Annotated, Literal, Optional, Union
from urllib.parse import urlencode, urlsplit

from django.apps import apps as django_apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.sitemaps import Sitemap
from django.contrib.sitemaps.views import SitemapIndexItem, sitemap as sitemap_view, x_robots_tag
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.paginator import Paginator
from django.core.wsgi import get_wsgi_application
from django.db import connections, models
from django.db.models import OuterRef, Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import register_converter, reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.timesince import timesince
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from nanodjango import Django, defer
from pydantic import Discriminator, Field, StrictBool, StringConstraints, Tag as Variant, TypeAdapter

from blogworks import activitypub, cards, cli, config, feeds, formats, linkadmin, linkstore, rules, tagging, text, webmention, writing
from blogworks.addresses import TagsConverter, TooManyTags, canonical_date_redirect, lowercase_tags, permanent_redirect, too_many_tags_is_400
from blogworks.admintools import ExportForm, ImportForm, admin_page, export_download, import_needs, permission_refused, run_import, tools_for
from blogworks.convert import ConvertPlugin
from blogworks.dates import MONTHS, day_range, month_range, months_by_year, year_range
from blogworks.importer import import_file
from blogworks.linkadmin import HistoryInline
from blogworks.linkcheck import OUTCOMES
from blogworks.linkstore import LinkHolder, StoredUrl
from blogworks.listing import (ListingPaginator, ListingStore, count_everything, count_pair, counts_scheduled,
                               listing_rows, load_posts, mixed_posts, paired_tag_counts, posts_beside, published_by_month,
                               requested_page, store_listing, tags_on_posts, tally_count, union_all, with_every_tag,
                               with_published_counts)
from blogworks.moderation import Moderated, ModerationAdmin, any_shown_under
from blogworks.permalinks import Permalinked
from blogworks.permissions import may_change, may_view, missing_permissions, needs_permissions, posts_visible_to
from blogworks.ratelimit import rate_limited
from blogworks.search import MAX_QUERY_LENGTH, Search
from blogworks.search_index import IndexedKind
from blogworks.serving import forget_cached_pages, watch_schedule
from blogworks.signals import posts_changed
from blogworks.signatures import OnlyKey, SignatureError
from blogworks.syndication import Syndicated
from blogworks.postcontent import StoredContent
from blogworks.tokens import IssuedToken
from blogworks.tagging import TAG_INITIALS, cloud_size, tags_matching
from blogworks.writing import ranked_tags

# These need settings, which `Django(...)` below configures; nanodjango's `defer` imports them then.
# It reads each import back from the bytecode, up to ten instructions around it: at most four names
# a line, and a line that imports from a module (or from `blogworks`) must not follow closely on
# another importing from the same one, which it would be mistaken for: four names between suffice.
with defer:
    from ninja.openapi.docs import Swagger
    from ninja.params import Path as PathParam, Query  # PathParam: not pathlib's Path, which this file also uses
    from blogworks import federation, upkeep  # their background jobs are made with the TASKS setting
    from blogworks.api import READ_ERRORS, WRITE_ERRORS, ApiProblem, responses
    from blogworks.api import TAG_PATTERN, InputSchema, TagName, When
    from blogworks.api import caller, page_of, patch_schema, text_field
    from blogworks.api import LinkblogAPI, BearerToken, StaffSession, Anonymous
    from blogworks.api import drop_default, draft_and_date_filter, save_post, validate_with_model_rules
    from blogworks.api import kind_of_item, listed_items, require_permission, visible_posts
    from blogworks.api import stored_items_page
    from ninja.responses import Status
    from ninja.schema import Schema

BASE_DIR = Path(__file__).resolve().parent


# --- Settings: everything a deployment changes comes from the environment -----------------

DEBUG = config.env_bool("DJANGO_DEBUG", True)
PRODUCTION = not DEBUG

app = Django(
    DEBUG=DEBUG,
    SECRET_KEY=config.secret_key(DEBUG),
    ALLOWED_HOSTS=config.env_list("DJANGO_ALLOWED_HOSTS", ["*"] if DEBUG else ["localhost", "127.0.0.1"]),
    CSRF_TRUSTED_ORIGINS=config.env_list("CSRF_TRUSTED_ORIGINS", []),
    DATABASES={"default": config.database_settings(BASE_DIR)},
    TEMPLATES=config.cached_template_loaders,
    CACHES=config.cache_settings(BASE_DIR),
    # Security headers and HTTPS. In production the site sits behind a proxy that terminates TLS.
    # The proxy redirects HTTP to HTTPS itself (README), so the app answers what reaches it.
    SECURE_SSL_REDIRECT=config.env_bool("DJANGO_SECURE_SSL_REDIRECT", False),
    SECURE_PROXY_SSL_HEADER=config.proxy_ssl_header(),
    SECURE_HSTS_SECONDS=config.env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0),
    SECURE_HSTS_INCLUDE_SUBDOMAINS=config.env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
    SECURE_HSTS_PRELOAD=config.env_bool("DJANGO_SECURE_HSTS_PRELOAD", False),
    SECURE_REFERRER_POLICY="strict-origin-when-cross-origin",
    SESSION_COOKIE_SECURE=config.env_bool("DJANGO_SECURE_COOKIES", PRODUCTION),
    CSRF_COOKIE_SECURE=config.env_bool("DJANGO_SECURE_COOKIES", PRODUCTION),
    # Deliberate, so `check --deploy` does not nag: the proxy does the HTTPS redirect (W008), and
    # subdomains and the browsers' preload list are the domain owner's choice (W005, W021; env above).
    SILENCED_SYSTEM_CHECKS=["security.W008", "security.W005", "security.W021"],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "blogworks.serving.ContentSecurityPolicyMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "blogworks.serving.AnonymousPageCacheMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "blogworks.database.BusyDatabaseMiddleware",  # a write that waited too long for a lock: a 503 page
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "axes.middleware.AxesMiddleware",  # last, as django-axes asks: answers a locked-out login
    ],
    ADMIN_URL="admin/",
    FORMS_URLFIELD_ASSUME_HTTPS=True,
    # ninja: the API docs UI, served locally; django_tasks and its database backend: background jobs;
    # axes: login throttling.
    EXTRA_APPS=["django.contrib.humanize", "django.contrib.sitemaps", "ninja", "django_tasks", "django_tasks_db", "axes"],
    TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
    # Login throttling (django-axes, README "Login throttling"): after AXES_FAILURE_LIMIT wrong passwords
    # a username is locked out from that address for a while. API tokens never log in, so never lock.
    AUTHENTICATION_BACKENDS=["blogworks.throttling.LoginThrottle", "django.contrib.auth.backends.ModelBackend"],
    AXES_FAILURE_LIMIT=config.env_int("LINKBLOG_LOGIN_FAILURE_LIMIT", 5),
    AXES_COOLOFF_TIME=timedelta(minutes=config.env_int("LINKBLOG_LOGIN_LOCKOUT_MINUTES", 60)),
    AXES_LOCKOUT_PARAMETERS=[["username", "ip_address"]],
    AXES_RESET_ON_SUCCESS=True,
    AXES_LOCKOUT_TEMPLATE="admin/locked_out.html",
    AXES_CLIENT_IP_CALLABLE="blogworks.throttling.client_ip_address",
    LINKBLOG_PROXY_COUNT=config.env_int("LINKBLOG_PROXY_COUNT", 0),  # proxies whose X-Forwarded-For is trusted
    TIME_ZONE="UTC",
    LOGGING=config.logging_settings(),
    LINKBLOG_TITLE=os.environ.get("LINKBLOG_TITLE", "linkblog"),
    LINKBLOG_AUTHOR=os.environ.get("LINKBLOG_AUTHOR", "The author"),
    LINKBLOG_BASE_URL=os.environ.get("LINKBLOG_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
    LINKBLOG_PAGE_SIZE=30,
    LINKBLOG_CSP=os.environ.get("LINKBLOG_CSP", config.DEFAULT_CSP),
    LINKBLOG_PAGE_CACHE=config.env_bool("LINKBLOG_PAGE_CACHE", PRODUCTION),
    LINKBLOG_PAGE_MAX_AGE=config.env_int("LINKBLOG_PAGE_MAX_AGE", 60),
    # The fediverse, WebSub and Webmention (README: Follow from the fediverse).
    LINKBLOG_AUTHOR_HANDLE=config.env_handle("LINKBLOG_AUTHOR_HANDLE", "author"),  # @author@host
    LINKBLOG_WEBSUB_HUB=config.env_url("LINKBLOG_WEBSUB_HUB"),  # empty: feeds name no hub, nothing is pinged
    LINKBLOG_INBOX_RATE_LIMIT=config.env_int("LINKBLOG_INBOX_RATE_LIMIT", 300),  # POSTs a minute per client
    LINKBLOG_WEBMENTION_RATE_LIMIT=config.env_int("LINKBLOG_WEBMENTION_RATE_LIMIT", 30),
    LINKBLOG_CLIENT_IP_HEADER=os.environ.get("LINKBLOG_CLIENT_IP_HEADER", "").strip(),  # e.g. X-Forwarded-For
    # Strangers name the URLs the fediverse and Webmention code fetch: never our own network's (netfetch.py).
    LINKBLOG_FETCH_PRIVATE_ADDRESSES=config.env_bool("LINKBLOG_FETCH_PRIVATE_ADDRESSES", False),
    # Links that outlive the web (README): the archive asked to keep copies, and when a link is dead.
    LINKBLOG_ARCHIVE_LINKS=config.env_bool("LINKBLOG_ARCHIVE_LINKS", True),
    LINKBLOG_ARCHIVE_URL=config.env_url("LINKBLOG_ARCHIVE_URL", "https://web.archive.org"),
    LINKBLOG_LINKCHECK_USER_AGENT=config.link_checker_user_agent(),
    LINKBLOG_LINK_DEAD_AFTER_FAILURES=config.env_int("LINKBLOG_LINK_DEAD_AFTER_FAILURES", 3),
    LINKBLOG_LINK_DEAD_AFTER_DAYS=config.env_int("LINKBLOG_LINK_DEAD_AFTER_DAYS", 7),
)


# --- Models: tags, and three kinds of post sharing one abstract base ----------------------


@lru_cache(maxsize=20_000)
def cached_reverse(name, *args):
    """reverse() for the links every listing repeats (each post's and each tag's): a URL depends only
    on its name and arguments, and reverse() cost more than the rest of rendering a post."""
    return reverse(name, args=args)


class Tag(models.Model):
    NAME_PATTERN = rules.TAG_NAME_PATTERN  # the rule for a tag's name: the admin's, the API's, the importer's, the URLs'

    tag = models.SlugField(max_length=64, unique=True, help_text="Lower case, e.g. django")
    description = models.TextField(blank=True, validators=rules.LONG_TEXT, help_text="Markdown, shown on the tag page")
    description_html = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["tag"]

    def __str__(self):
        return self.tag

    @classmethod
    def clean_name(cls, value):
        """The tag `value` names (trimmed, lower case), or a ValidationError saying what is wrong."""
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("empty or not text")
        name, max_length = rules.tag_name_as_stored(value), cls._meta.get_field("tag").max_length
        if len(name) > max_length:
            raise ValidationError(f"longer than {max_length} characters: “{name[:40]}…”")
        if not re.fullmatch(cls.NAME_PATTERN, name):
            raise ValidationError(f"not a slug (letters, digits, - and _): “{name[:max_length]}”")
        return name

    def clean(self):
        self.tag = rules.tag_name_as_stored(self.tag)  # before the uniqueness check, so "Django" clashes with "django"

    def save(self, *args, **kwargs):
        self.tag = rules.tag_name_as_stored(self.tag)
        self.description_html = text.render_markdown(self.description)
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return cached_reverse("tag_page", self.tag)


class TagRedirect(models.Model):
    """An old tag name left behind by a rename or merge: its page redirects to `tag`."""

    old_tag = models.SlugField(max_length=64, unique=True)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="redirects")

    def __str__(self):
        return f"{self.old_tag} → {self.tag}"


class PostQuerySet(models.QuerySet):
    """The one definition of what readers may see: not a draft, and dated now or earlier (a post
    dated in the future is scheduled and appears at its moment)."""

    @staticmethod
    def published_filter(prefix=""):
        """The Q of published posts; `prefix` ("entry__") reaches them through a relation."""
        return Q(**{f"{prefix}is_draft": False, f"{prefix}created__lte": timezone.now()})

    def published(self):
        """The posts readers may see."""
        return self.filter(self.published_filter())

    def on_day(self, start, end, slug, published_only):
        """The post with `slug` dated in [start, end) (its permalink's day), or None; with
        `published_only`, only if readers may see it. Our own SQL through raw(): a permalink asks on
        every view, and compiling the ORM's lookup took 0.46 ms against raw()'s 0.1 (a blogmark's
        whole permalink is about 2)."""
        ops = connections[self.db].ops
        quote, adapt = ops.quote_name, ops.adapt_datetimefield_value
        created, sql_params = quote("created"), [adapt(start), adapt(end), slug]
        sql = f"SELECT * FROM {quote(self.model._meta.db_table)} WHERE {created} >= %s AND {created} < %s AND {quote('slug')} = %s"
        if published_only:  # published_filter(), as SQL: compiling the Q (condition_sql) took 0.3 ms
            sql, sql_params = f"{sql} AND NOT {quote('is_draft')} AND {created} <= %s", [*sql_params, adapt(timezone.now())]
        return next(iter(self.raw(f"{sql} ORDER BY {created} DESC, {quote('id')} DESC LIMIT 1", sql_params)), None)

    def scheduled(self):
        """Posts that are not drafts but dated in the future: they go live at their moment."""
        return self.filter(is_draft=False, created__gt=timezone.now())


class Post(Permalinked, StoredContent, LinkHolder, Syndicated, models.Model):
    """What every kind of post shares: date, slug, tags, draft flag and its rendered HTML. Each kind
    says once, as class attributes below, what the rest of the site needs to know of it."""

    created = models.DateTimeField(default=timezone.now, db_index=True)
    slug = models.SlugField(max_length=64, blank=True, help_text="Made from the title when empty")
    tags = models.ManyToManyField(Tag, blank=True)
    is_draft = models.BooleanField(default=False, db_index=True, help_text="Drafts are never shown; a date in the future schedules the post")
    html = models.TextField(blank=True, editable=False)
    updated = models.DateTimeField(null=True, blank=True, editable=False, help_text="When its content last changed")
    # Nullable so that SQLite adds the column in place (rebuilding the table would trip the search triggers).
    preview_token = models.CharField(max_length=64, null=True, blank=True, editable=False, db_index=True,
                                     help_text="The secret of its shareable preview link; empty: none")

    objects = PostQuerySet.as_manager()

    LAST_DAY = rules.LAST_DAY  # the first day a post cannot have (blogworks/permalinks.py)

    kind = None  # "entry", "blogmark" or "quotation"
    slug_source_field = None  # the field its slug and its title come from
    markdown_field = None  # the field holding its Markdown
    search_fields = ("", "", "")  # title, body, source: "" where the kind has none
    search_names = ()  # the names `type:` accepts in a search
    export_fields = ()  # the fields an export writes
    natural_key_fields = ()  # the fields that find it again in an import without a slug
    natural_key_per_day = True  # False: the natural key finds the post on any day
    feed_name = None  # its feed: /atom/<feed_name>/
    link_field = None  # the field holding the page the post is about, for the fediverse copy
    link_fields = ()  # fields holding one URL each, besides the links inside its Markdown

    class Meta:
        abstract = True
        ordering = ["-created", "-id"]
        # Every post has a permalink: bulk writes that skip save() cannot store an empty slug.
        constraints = [models.CheckConstraint(condition=~Q(slug=""), name="%(app_label)s_%(class)s_has_slug")]

    def get_absolute_url(self):
        created = self.created.astimezone(dt_timezone.utc)
        return cached_reverse("permalink", created.year, MONTHS[created.month - 1], created.day, self.slug)

    @staticmethod
    def kinds():
        """Every kind of post: they share one space of permalinks."""
        return POST_MODELS.values()

    def save(self, *args, **kwargs):
        self.fill_in_defaults()
        self.note_edit()
        self.render()
        super().save(*args, **kwargs)


class Entry(Post):
    title = models.CharField(max_length=255, validators=rules.REQUIRED_TEXT)
    body = models.TextField(validators=rules.REQUIRED_LONG_TEXT, help_text="Markdown")
    excerpt_html = models.TextField(blank=True, editable=False)
    word_count = models.PositiveIntegerField(default=0, editable=False)

    kind = "entry"
    slug_source_field = "title"
    markdown_field = "body"
    search_fields = ("title", "body", "")
    search_names = ("entry", "entries")
    export_fields = ("title", "body")
    natural_key_fields = ("title",)
    feed_name = "entries"

    class Meta(Post.Meta):
        verbose_name_plural = "entries"

    @classmethod
    def rendered(cls, markdown_text):
        return text.rendered_entry(markdown_text)

    @property
    def is_truncated(self):
        return self.excerpt_html != self.html


class Blogmark(Post):
    link_url = rules.WebURLField(max_length=rules.MAX_URL_LENGTH)
    link_title = models.CharField(max_length=255, validators=rules.REQUIRED_TEXT)
    via_url = rules.WebURLField(max_length=rules.MAX_URL_LENGTH, blank=True)
    via_title = models.CharField(max_length=255, blank=True, validators=[rules.validate_text])
    commentary = models.TextField(blank=True, validators=rules.LONG_TEXT, help_text="Markdown")

    kind = "blogmark"
    slug_source_field = "link_title"
    markdown_field = "commentary"
    search_fields = ("link_title", "commentary", "via_title")
    search_names = ("blogmark", "blogmarks", "link", "links")
    export_fields = ("link_url", "link_title", "via_url", "via_title", "commentary")
    natural_key_fields = ("link_url",)
    natural_key_per_day = False  # a link blogged again on another day is the same blogmark
    feed_name = "links"
    link_field = "link_url"
    link_fields = ("link_url", "via_url")

    class Meta(Post.Meta):  # each kind names its Meta: nanodjango would otherwise replace the inherited one
        pass

    @staticmethod
    def of_link(posts, url):
        """The blogmarks among `posts` of `url` as it was typed or pasted: stored as a browser sends it
        (web_url), or as it is (a link stored before that rule keeps matching)."""
        return posts.filter(link_url__in={url, rules.stored_web_url(url) or url})


class Quotation(Post):
    quotation = models.TextField(validators=rules.REQUIRED_LONG_TEXT, help_text="Markdown")
    source = models.CharField(max_length=255, validators=rules.REQUIRED_TEXT)
    source_url = rules.WebURLField(max_length=rules.MAX_URL_LENGTH, blank=True)

    kind = "quotation"
    slug_source_field = "source"
    markdown_field = "quotation"
    search_fields = ("", "quotation", "source")
    search_names = ("quotation", "quotations", "quote", "quotes")
    export_fields = ("quotation", "source", "source_url")
    natural_key_fields = ("source", "quotation")
    feed_name = "quotations"
    link_field = "source_url"
    link_fields = ("source_url",)

    class Meta(Post.Meta):  # each kind names its Meta: nanodjango would otherwise replace the inherited one
        pass

    def feed_title(self):
        return f"Quoting {self.source}"

    def page_title(self):
        words = text.first_words(self.html)
        return f"{self.feed_title()}: “{words}”" if words else self.feed_title()


class ApiToken(IssuedToken, models.Model):
    """A named API token of a user. Only its SHA-256 hash is stored: the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for, e.g. “phone”")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True, help_text="Untick to revoke the token")

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{self.name or 'token'} of {self.user}"


# The fediverse and the IndieWeb: the blog's key, who follows it, what they were told, and what
# others said about its posts (the work is blogworks.federation's).


class ActorKey(OnlyKey, models.Model):
    """The blog actor's RSA key pair, made on first use: followers' servers check every delivery
    against its public half. One row, never shown in the admin."""

    private_pem = models.TextField()
    public_pem = models.TextField()
    created = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"the blog's key of {self.created:%Y-%m-%d}"


class Follower(models.Model):
    """An account on another server that follows the blog, and where its posts are delivered."""

    actor = models.URLField(max_length=1000, unique=True)
    name = models.CharField(max_length=255, blank=True)
    follow_id = models.URLField(max_length=1000, blank=True, help_text="The Follow activity, which an Undo names")
    inbox = models.URLField(max_length=1000, blank=True, help_text="Empty until its server has been asked")
    shared_inbox = models.URLField(max_length=1000, blank=True)
    created = models.DateTimeField(default=timezone.now)
    failing_since = models.DateTimeField(null=True, blank=True, help_text="Deliveries have failed since then")

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.actor

    @classmethod
    def at_inbox(cls, inbox):
        return cls.objects.filter(Q(inbox=inbox) | Q(shared_inbox=inbox))

    @classmethod
    def delivery_inboxes(cls):
        """Where a post goes: each server's shared inbox once, else each follower's own inbox."""
        rows = cls.objects.exclude(inbox="").values_list("shared_inbox", "inbox")
        return sorted({shared or own for shared, own in rows})


class Announcement(models.Model):
    """What followers were last told of a post: its object's id and a fingerprint of what they saw."""

    kind = models.CharField(max_length=20)
    post_id = models.PositiveBigIntegerField()
    object_id = models.URLField(max_length=1000)
    fingerprint = models.CharField(max_length=64)
    announced = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "post_id"], name="linkblog_announcement_once")]


class Response(Moderated, models.Model):
    """What others said about a post (a fediverse reply, a Webmention): kept for the author to
    approve, shown under the post once approved. Its HTML is sanitized before it is stored."""

    PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"

    post_kind = models.CharField(max_length=20)
    post_id = models.PositiveBigIntegerField()
    status = models.CharField(max_length=10, default=PENDING, db_index=True, choices=[
        (PENDING, "Waiting for approval"), (APPROVED, "Approved"), (REJECTED, "Rejected")])
    url = models.URLField(max_length=1000, help_text="Where it was published")
    author_name = models.CharField(max_length=255, blank=True)
    author_url = models.URLField(max_length=1000, blank=True)
    content_html = models.TextField(blank=True)
    published = models.DateTimeField(null=True, blank=True)
    received = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        abstract = True
        ordering = ["received"]

    def __str__(self):
        return f"{self.author_name or self.author_url or self.url} on {self.post_kind} {self.post_id}"


class Reply(Response):
    """A reply from the fediverse to one of the posts."""

    note_id = models.URLField(max_length=1000, unique=True)
    actor = models.URLField(max_length=1000, db_index=True)

    class Meta(Response.Meta):
        verbose_name_plural = "replies"


class Mention(Response):
    """A Webmention: a page elsewhere that links one of the posts (verified by fetching it)."""

    source = models.URLField(max_length=1000)
    target = models.URLField(max_length=1000)
    kind = models.CharField(max_length=20, default="mention", help_text="reply, like, repost, bookmark or mention")

    class Meta(Response.Meta):
        constraints = [models.UniqueConstraint(fields=["source", "target"], name="linkblog_mention_once")]


# Links: every distinct URL the posts hold, checked by `python linkblog.py check-links` and kept in
# a web archive (blogworks/linkstore.py, linkcheck.py, linktasks.py; README "Links that outlive the web").


class LinkQuerySet(models.QuerySet):
    def held(self):
        """Links some post holds (one no post holds any more keeps its history but is not checked)."""
        return self.filter(models.Exists(PostLink.objects.filter(link=OuterRef("pk"))))


class Link(StoredUrl, models.Model):
    """One distinct URL that posts link to: its state (decided from its checks), where it leads now,
    and its archived copy. Pages read this row only: nothing is fetched while a reader waits."""

    STATES = [("alive", "alive"), ("suspect", "suspect (failing, not dead yet)"), ("dead", "dead"),
              ("moved", "moved permanently")]

    url = models.TextField()
    # URLs can be thousands of characters, past what a (PostgreSQL btree) index entry holds.
    url_hash = models.CharField(max_length=64, unique=True, editable=False)
    host = models.CharField(max_length=255, db_index=True, editable=False)
    state = models.CharField(max_length=8, choices=STATES, default="alive", db_index=True)
    final_url = models.TextField(blank=True, help_text="Where a moved link leads now")
    archived_url = models.TextField(blank=True, help_text="Its copy in the web archive")
    last_checked = models.DateTimeField(null=True, blank=True)
    fine_since = models.DateTimeField(null=True, blank=True, help_text="Marked fine: earlier failures no longer count")

    objects = LinkQuerySet.as_manager()

    class Meta:
        ordering = ["host", "url"]

    def __str__(self):
        return self.url if len(self.url) <= 100 else self.url[:99] + "…"


class PostLink(models.Model):
    """Post (kind, id) holds `link`, at `position` among its links. Kept in step when a post is
    saved, deleted or imported."""

    kind = models.CharField(max_length=16)
    post_id = models.PositiveBigIntegerField()
    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="posts")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "post_id", "link"], name="linkblog_postlink_unique")]


class PostCard(models.Model):
    """A post as listings, feeds and search results show it, stored when first listed after a change
    and read by every listing page, feed and search page (blogworks/cards.py: what forgets it;
    `digest`: the templates and settings it was rendered with). Its Edit link is a slot the page
    fills per user; a search result's title and excerpt are slots the search page fills, and a
    permalink's replies and mentions a slot its page fills."""

    kind = models.CharField(max_length=16)
    post_id = models.PositiveBigIntegerField()
    html = models.TextField()
    feed_entry = models.TextField()
    api_item = models.TextField(default="")
    search_result = models.TextField(default="")
    permalink = models.TextField(default="")
    last_modified = models.DateTimeField()
    digest = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "post_id"], name="linkblog_postcard_unique")]


class LinkCheckRun(models.Model):
    """One run of check-links: an interrupted run is resumed, skipping what it already checked."""

    started = models.DateTimeField()
    finished = models.DateTimeField(null=True, blank=True)


class LinkCheck(models.Model):
    """What one check of a link found (blogworks.linkcheck.LinkResult): its history, one row a run."""

    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="checks")
    run = models.ForeignKey(LinkCheckRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="checks")
    checked_at = models.DateTimeField()
    status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status of the last answer")
    outcome = models.CharField(max_length=16, choices=[(outcome, outcome.replace("_", " ")) for outcome in OUTCOMES])
    final_url = models.TextField(blank=True)
    permanent_redirect = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    redirects = models.JSONField(default=list, blank=True, help_text="[status, url] of each redirect followed")

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["link", "checked_at"]), models.Index(fields=["checked_at"])]


class Listed(models.Model):
    """One row per post of every kind, drafts and scheduled posts included, kept in step with the
    posts by store_posts_listing(): home, feeds and the API page through its index (blogworks/listing.py)."""

    kind = models.CharField(max_length=16)
    post_id = models.BigIntegerField()
    created = models.DateTimeField()
    is_draft = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "post_id"], name="linkblog_listed_one_per_post")]
        indexes = [models.Index(fields=["created", "post_id", "kind", "is_draft"], name="linkblog_listed_order")]


class ListedTag(models.Model):
    """One row per tag of a post, with the post's date and draft flag copied: a tag page (and its
    count) is one range of the (tag, created) index, which holds every column it reads. (is_draft
    comes last: SQLite writes `NOT is_draft`, which no index can seek, so drafts are skipped in it.)"""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=16)
    post_id = models.BigIntegerField()
    created = models.DateTimeField()
    is_draft = models.BooleanField()

    class Meta:
        indexes = [
            models.Index(fields=["tag", "created", "post_id", "kind", "is_draft"], name="linkblog_listedtag_order"),
            models.Index(fields=["kind", "post_id", "tag"], name="linkblog_listedtag_post"),
        ]


class Tally(models.Model):
    """A tag's non-draft posts (scheduled ones included) and the newest one's date; `tag` NULL: every
    post. Published counts come from it (blogworks/listing.py tally_count) without counting rows."""

    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, null=True, related_name="tally")
    listed = models.IntegerField(default=0)
    newest = models.DateTimeField(null=True)


class MonthTally(models.Model):
    """A UTC month's non-draft posts (scheduled ones included) and the newest one's date: the date
    archives count their months from it (blogworks/listing.py published_by_month), not from the
    rows, which took 30 ms at 100,000 posts."""

    month = models.DateField(unique=True)  # its first day
    listed = models.IntegerField(default=0)
    newest = models.DateTimeField()


class PairTally(models.Model):
    """How many non-draft posts (scheduled ones included) carry both `tag` and `other` (tag.pk <
    other.pk): a page combining two tags is counted without walking either (blogworks/listing.py)."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+", db_index=False)  # the indexes below lead with it
    other = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+", db_index=False)
    listed = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tag", "other"], name="linkblog_pairtally_one_per_pair")]
        # A tag's related tags are its pairs with the most posts: each side read in that order, merged,
        # stopping at ten (paired_tag_counts), instead of sorting all its pairs (0.9 -> 0.1 ms for a
        # tag met with 2,900 others).
        indexes = [models.Index(fields=["tag", "listed"], name="linkblog_pairtally_by_tag"),
                   models.Index(fields=["other", "listed"], name="linkblog_pairtally_by_other")]


def with_links(posts):
    """`posts` (a list), each given its Links' stored states: one query for them all."""
    return linkstore.attach_links(posts, PostLink)


def load_with_links(rows):
    """The posts behind a page of (kind, pk) rows, in order, with their links' states."""
    return with_links(load_posts(rows, POST_MODELS))


POST_MODELS = {model.kind: model for model in (Entry, Blogmark, Quotation)}
LISTING = ListingStore(POST_MODELS, Listed, ListedTag, Tally, PairTally, MonthTally)
SEARCH_INDEX = [IndexedKind.of(model) for model in POST_MODELS.values()]


VIEW_EVERYTHING = [("view", model) for model in (Tag, *POST_MODELS.values())]  # every tag and every draft


# nanodjango never sets our app's models module, so Django's post_migrate handlers would skip
# the app: no content types and no permissions for these models (admin history and per-user
# permissions both need them).
django_apps.get_app_config(app.app_name).models_module = app.app_module


def store_posts_listing(ids_by_kind):
    """Bring the listing store in step with these posts ({kind: pks}): the one way every write path
    (a save or delete, tags changed either way, loaddata, import, tag merge) keeps it right."""
    store_listing(LISTING, ids_by_kind)


def connect_signals():
    """Writes keep listing, link and card rows in step and tell the fediverse (blogworks/upkeep.py)."""
    keeper = upkeep.Upkeep(POST_MODELS, Link, PostLink, [Reply, Mention], ListedTag, store_posts_listing)
    covered = [Tag, Link, Reply, Mention, *POST_MODELS.values(), *(model.tags.through for model in POST_MODELS.values())]
    upkeep.connect(keeper, Tag, PostCard, SEARCH_INDEX, announced=[Reply, Mention], covered=covered)


connect_signals()


def published_posts(**filters):
    """Published posts of every kind matching `filters`, as querysets by kind (for mixed listings)."""
    return {kind: model.objects.published().filter(**filters) for kind, model in POST_MODELS.items()}


def published_listing(kinds=None, tags=(), dates=Q()):
    """Newest-first (kind, pk, created) rows of the published posts (of `kinds`, all by default)
    carrying every one of `tags` (Tag objects with `post_count`, as readable_tags() gives them),
    within `dates` (a Q on `created`). `dates` come first in the condition: of two upper bounds on
    `created` (a period's end, and now), SQLite walks the index from the first one written, and
    from now down to 2008 took 7 ms at 100,000 posts."""
    condition = dates & PostQuerySet.published_filter() & (Q(kind__in=kinds) if kinds is not None else Q())
    return listing_rows(LISTING, condition, tags)


def next_scheduled_moment():
    """When the next scheduled post goes live, or None: one query over every kind."""
    rows = union_all([model.objects.scheduled().order_by().values("created") for model in POST_MODELS.values()])
    first = rows.order_by("created").first()
    return first and first["created"]


watch_schedule(next_scheduled_moment)  # the page cache starts afresh at that moment


def tags_with_counts():
    """Every tag, annotated with `post_count`: its published posts of every kind (from its tally)."""
    return Tag.objects.annotate(post_count=tally_count(ListedTag, timezone.now()))


def tags_by_name(names):
    """The tags of these names, each with `post_count` as tags_with_counts() gives it (read in Python)."""
    return with_published_counts(LISTING, names, timezone.now())


def readable_tags():
    """The tags readers may see, with `post_count`: those at least one published post carries. Any
    other tag (only drafts carry it, or nothing) is a 404 and absent from every page, feed, card,
    the sitemap, the API's answers to anonymous callers and an export without drafts."""
    return tags_with_counts().filter(post_count__gt=0)


# --- Admin: where the author writes ---------------------------------------------------------


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["tag", "post_count"]
    search_fields = ["tag", "description"]

    def get_queryset(self, request):
        return tags_with_counts()

    @admin.display(description="Published posts", ordering="post_count")
    def post_count(self, tag):
        return tag.post_count

    def save_model(self, request, tag, form, change):
        """A name changed here leaves the old one redirecting to it, as the API's rename does."""
        if change and "tag" in form.changed_data:
            new_name, tag.tag = tag.tag, form.initial["tag"]
            tagging.rename(tag, new_name, TagRedirect)  # saves the description too
        else:
            super().save_model(request, tag, form, change)

    def get_search_results(self, request, queryset, search_term):
        """The autocomplete ranks names (blogworks.writing.ranked_tags); the list searches descriptions too."""
        if request.resolver_match and request.resolver_match.url_name == "autocomplete" and search_term.strip():
            # From Tag.objects: the published-post counts the list shows would cost a subquery a tag.
            return ranked_tags(Tag.objects.all(), search_term, [model.tags.through for model in POST_MODELS.values()]), False
        return super().get_search_results(request, queryset, search_term)


class PostAdmin(writing.PostAdmin):
    """What every kind's admin shares (blogworks/writing.py), with this site's tags and search."""

    tag_model = Tag

    def search(self, term, querysets):
        return search_posts(term, querysets)


@admin.register(Entry)
class EntryAdmin(PostAdmin):
    list_display = ["title", "created", "tag_list", "status", "word_count"]
    search_fields = ["title"]  # part of a word too, besides the site's search (PostAdmin.get_search_results)
    prepopulated_fields = {"slug": ["title"]}
    fields = ["title", "slug", "body", "tags", "add_tags", "created", "is_draft", "preview_link"]


@admin.register(Blogmark)
class BlogmarkAdmin(PostAdmin):
    list_display = ["link_title", "short_link_url", "created", "tag_list", "status"]
    search_fields = ["link_url"]  # besides the site's search (PostAdmin.get_search_results)
    prepopulated_fields = {"slug": ["link_title"]}
    fields = ["link_url", "link_title", "slug", "commentary", "via_url", "via_title", "tags", "add_tags", "created", "is_draft",
              "preview_link"]

    def wants_field_search(self, search_term):
        return any(character in search_term for character in "./:")  # a URL or a host; words: the index

    @admin.display(description="Link URL", ordering="link_url")
    def short_link_url(self, post):
        return writing.truncated(post.link_url)


@admin.register(Quotation)
class QuotationAdmin(PostAdmin):
    list_display = ["source", "short_quotation", "created", "tag_list", "status"]
    search_fields = ["source"]  # besides the site's search (PostAdmin.get_search_results)
    prepopulated_fields = {"slug": ["source"]}
    fields = ["quotation", "source", "source_url", "slug", "tags", "add_tags", "created", "is_draft", "preview_link"]

    @admin.display(description="Quotation")
    def short_quotation(self, post):
        return writing.truncated(post.quotation)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff see who holds which token and when it was last used, and revoke it; never the token."""

    list_display = ["name", "user", "created", "last_used_at", "is_active"]
    list_filter = ["is_active"]
    fields = ["name", "user", "created", "last_used_at", "is_active"]
    readonly_fields = ["name", "user", "created", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # tokens are made with `python linkblog.py token USERNAME`, which shows them once

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        count = queryset.update(is_active=False)
        self.message_user(request, f"Revoked {count} token(s).")


@admin.register(Reply)
class ReplyAdmin(ModerationAdmin):
    readonly_fields = ["note_id", "actor", "url", "author_name", "author_url", "content_html", "published", "received"]


@admin.register(Mention)
class MentionAdmin(ModerationAdmin):
    list_display = ["author_name", "kind", "excerpt", "post_link", "status", "received"]
    list_filter = ["status", "kind"]


@admin.register(Follower)
class FollowerAdmin(admin.ModelAdmin):
    """Who follows the blog from the fediverse; deleting one stops deliveries to it."""

    list_display = ["actor", "name", "inbox", "created", "failing_since"]
    list_filter = ["failing_since"]
    search_fields = ["actor", "name"]
    readonly_fields = ["actor", "name", "follow_id", "inbox", "shared_inbox", "created", "failing_since"]

    def has_add_permission(self, request):
        return False  # followers follow from their own servers


# Links: the author's page of links that need attention, with their history and ways to fix them.


class LinkCheckInline(HistoryInline):
    model = LinkCheck


@admin.register(Link)
class LinkAdmin(linkadmin.LinkAdmin):
    """Links that need attention, their history and the fixes (blogworks/linkadmin.py)."""

    inlines = [LinkCheckInline]
    post_link_model = PostLink
    post_models = POST_MODELS


# --- Pages: the home page, the tag page, permalinks, and the filters templates use ---------


# Listings, feeds, /api/items and search pages show each post as its stored card (blogworks/cards.py),
# rendered by its kind's partial, its feed template, the API's Item schema and renderer (as the API
# sends it) and _search_result.html.
CARDS = cards.CardStore(PostCard, POST_MODELS, load_with_links, lambda post: PostsFeed().stored_entry(post),
                        api_item=lambda post: api.renderer.render(None, ITEM.dump_python(ITEM.validate_python(post)), response_status=200),
                        api_shape=lambda: ITEM.json_schema())


def listing_page(request, rows, count=None):
    """The requested page of published_listing() rows, counted by `count()` when it is cheaper."""
    return loaded_page(request, ListingPaginator(rows, settings.LINKBLOG_PAGE_SIZE, count))


def loaded_page(request, paginator):
    """The page `?page=` asks for (404 past the end), as its posts' stored cards in order."""
    page = requested_page(request, paginator)
    page.object_list = CARDS.cards_for(request.user, page.object_list)
    return page


def count_published_posts():
    return count_everything(LISTING, timezone.now())


@app.route("/", name="home")
def home(request):
    return render(request, "home.html", {"page": listing_page(request, published_listing(), count_published_posts)})


# The tag page, top to bottom: its URL (one tag, or up to three joined with +), the tags it names
# (or a redirect from a renamed tag), their posts, and the related tags beside them.

MAX_COMBINED_TAGS = 3
RELATED_TAGS = 10
RELATED_SAMPLE = 30  # a combined page's related tags are counted on its newest posts (its first page): the cost stays bounded


register_converter(TagsConverter, "tags")  # blogworks/addresses.py: its 301s and 400 too


@app.route("/tags/<tags:names>/", name="tag_page")
@lowercase_tags
@too_many_tags_is_400
def tag_page(request, names):
    """One tag's page, or the posts carrying all of two or three tags (`/tags/a+b/`)."""
    try:
        tags = tags_named(names)
    except Http404:
        return redirect_renamed_tags(request, names)
    names = [tag.tag for tag in tags]
    rows = published_listing(tags=tags)
    page = listing_page(request, rows, count_tagged(tags))
    context = {
        "tags": tags,
        "names": names,
        "page": page,
        "canonical": canonical_tag_page(names, page),
        "related": related_tags(tags, rows),
    }
    return render(request, "tag.html", context)


def tags_named(names):
    """The tags named in a URL, in its order and without repeats: 404 if one is unknown or unreadable."""
    if len(names) > MAX_COMBINED_TAGS:
        raise TooManyTags(f"A page can combine at most {MAX_COMBINED_TAGS} tags; this address names {len(names)}.")
    names = list(dict.fromkeys(names))
    found = {tag.tag: tag for tag in tags_by_name(names) if tag.post_count > 0}  # readable_tags()' rule
    if len(found) < len(names):
        raise Http404("No such tag")
    return [found[name] for name in names]


def redirect_renamed_tags(request, names):
    """A 301 to the current page when the URL names a tag by an old name (renamed or merged
    through the API); a 404 when a name is neither a tag nor an old name."""
    redirects = TagRedirect.objects.filter(old_tag__in=names, tag__in=readable_tags().values("pk"))
    new_names = dict(redirects.values_list("old_tag", "tag__tag"))
    if not new_names:
        raise Http404("No such tag")
    current = list(dict.fromkeys(new_names.get(name, name) for name in names))
    return permanent_redirect(request, "tag_page", names=current)


def count_tagged(tags):
    """How to count a tag page's posts: one tag's tally (tags_by_name() read it), two tags' pair tally,
    else None (the rows)."""
    if len(tags) == 1:
        return lambda: tags[0].post_count
    return (lambda: count_pair(LISTING, tags, timezone.now())) if len(tags) == 2 else None


def canonical_tag_page(names, page):
    """The one address search engines should know a tag page by: tags in alphabetical order."""
    url = reverse("tag_page", args=[sorted(names)])
    return f"{url}?page={page.number}" if page.number > 1 else url


def related_tags(tags, rows):
    """The tags most often found besides `tags`, most shared first, as [{"tag", "count", "url",
    "combined_url"}]; `combined_url` is the tag page that adds this tag (None past MAX_COMBINED_TAGS).
    One tag: counted over all its published posts, from the pair tallies (less its scheduled posts'
    pairs while it has some); else on the newest RELATED_SAMPLE of `rows` (the posts carrying all of `tags`)."""
    names, now = [tag.tag for tag in tags], timezone.now()
    if len(tags) == 1:
        scheduled = counts_scheduled(getattr(tags[0], "tally", None), now)
        ranked = paired_tag_counts(LISTING, tags[0].pk, RELATED_TAGS, scheduled_after=now if scheduled else None)
    else:
        ranked = tags_on_posts(LISTING, rows[:RELATED_SAMPLE], [tag.pk for tag in tags], RELATED_TAGS)
    can_combine = len(names) < MAX_COMBINED_TAGS
    return [{"tag": name, "count": count, "url": cached_reverse("tag_page", name),
             "combined_url": cached_reverse("tag_page", "+".join([*names, name])) if can_combine else None}
            for name, count in ranked]


# Permalinks: /2024/Sep/25/slug/ (dates in URLs: blogworks/dates.py)

def find_post(start, end, slug, user=None):
    """The post with this slug on this day, of any kind. A draft only for a user who may view drafts
    of its kind (may_view: its view or change permission). A slug is unique on its day across kinds,
    so the order of the lookups only decides how many a permalink takes: blogmarks, most of a link
    blog, come first."""
    for model in (Blogmark, Entry, Quotation):
        published_only = not may_view(user, model)
        post = model.objects.on_day(start, end, slug, published_only)  # its tags are in its stored card
        if post:
            return post
    raise Http404("No such post")


def adjacent_posts(post):
    """The published posts just before and just after `post` in the listings' order (newest first;
    posts of one moment by pk, then kind, both descending), of any kind (None at either end), each
    with what a link to it needs: one query (blogworks/listing.py)."""
    return posts_beside(LISTING, post.kind, post.pk, post.created, timezone.now())


@app.route("/<int:year>/<str:month>/<int:day>/<slug:slug>/", name="permalink")
@canonical_date_redirect
def permalink(request, year, month, day, slug):
    start, end = day_range(year, month, day)
    post = find_post(start, end, slug, request.user)
    previous, following = adjacent_posts(post)
    context = {"post": post, "previous": previous, "next": following, **CARDS.permalink_for(request.user, post, responses_under(post))}
    return render(request, "post.html", context)


def responses_under(post):
    """The approved replies and Webmentions under `post`, as HTML ("" for most posts, which have none)."""
    if not any_shown_under([Reply, Mention], post):
        return ""
    return render_to_string("_responses.html", {"replies": Reply.shown_under(post), "mentions": Mention.shown_under(post)})


@app.route("/preview/<str:token>/", name="draft_preview")
@never_cache
def draft_preview(request, token):
    """A draft or scheduled post as it will look, for whoever holds its secret link (revocable in
    the admin); never indexed, never cached."""
    for model in POST_MODELS.values():
        post = model.objects.filter(preview_token=token).first() if len(token) >= 20 else None
        if post:
            parts = CARDS.permalink_for(request.user, post, responses_under(post))  # rendered, never stored: not out yet
            response = render(request, "post.html", {"post": post, "is_preview": True, **parts})
            response["X-Robots-Tag"] = "noindex, nofollow"
            return response
    raise Http404("No such preview")


# Filters for the templates ({% load linkblog %}): the work is blogworks.text's.


@app.templatetag.filter(name="safe_url")
def safe_url(url):
    """A URL fit for an href: http(s) and mailto pass, anything else (javascript:, data:) is dropped."""
    return url if text.is_safe_url(url) else ""


@app.templatetag.simple_tag(name="site")
def site_setting(name):
    """{% site "title" %}: the site's title, author or base URL from the LINKBLOG_ settings."""
    return getattr(settings, f"LINKBLOG_{name.upper()}")


@app.templatetag.filter(name="edit_url")
def edit_url(post, user):
    """{{ post|edit_url:user }}: the admin page that edits `post`, if `user` may change it; else ""."""
    if not may_change(user, type(post)):
        return ""
    return reverse(f"admin:{post._meta.app_label}_{post._meta.model_name}_change", args=[post.pk])


@app.templatetag.filter(name="absolute")
def absolute_url(path):
    """A site path as a full URL on LINKBLOG_BASE_URL: for feeds, the sitemap and cards."""
    return settings.LINKBLOG_BASE_URL + path


@app.templatetag.filter(name="duration")
def duration(delta):
    """A timedelta in words, for messages: "1 hour", "30 minutes"."""
    now = timezone.now()
    return timesince(now - delta, now)


@app.templatetag.filter(name="archived_copy")
def archived_copy(post, url):
    """{{ post|archived_copy:post.link_url }}: the archived copy of a dead link, from stored rows, or ""."""
    return post.archived_copy(url)


@app.templatetag.filter(name="description")
def description(html):
    """Plain text of stored HTML for meta descriptions, trimmed on a word."""
    return text.description(html)


# --- Feeds: Atom for everything, for each kind and for each tag or combination of tags --------


class PostsFeed(feeds.PostsFeed):
    """Our published posts, newest first, as Atom entries stored with their cards (the entries, paging
    and the generator: blogworks/feeds.py); subclasses say which posts and the feed's titles and links."""

    def querysets(self, obj):
        raise NotImplementedError

    def rows(self, obj):
        """Newest-first (kind, pk) rows of the feed's posts: the listing store's where it keeps them."""
        return mixed_posts(self.querysets(obj))

    def stored_cards(self, rows):
        return CARDS.feed_entries(rows)


class KindFeed(PostsFeed):
    """Everything (/atom/everything/), or the posts of one kind (its `feed_name`: /atom/links/)."""

    def get_object(self, request, name):
        if name != "everything" and name not in {model.feed_name for model in POST_MODELS.values()}:
            raise Http404("No such feed")
        return name

    def rows(self, name):
        return published_listing(kinds=None if name == "everything" else [kind for kind, model in POST_MODELS.items() if model.feed_name == name])

    def title(self, name):
        return settings.LINKBLOG_TITLE if name == "everything" else f"{settings.LINKBLOG_TITLE}: {name}"

    def link(self, name):
        return absolute_url(reverse("home"))

    def feed_url(self, name):
        return absolute_url(reverse("feed", args=[name]))


class TagFeed(PostsFeed):
    """Posts carrying one tag, or all of two or three (`/tags/a+b.atom`)."""

    def get_object(self, request, names):
        return tags_named(names)

    def rows(self, tags):
        return published_listing(tags=tags)

    def title(self, tags):
        names = " + ".join(tag.tag for tag in tags)
        return f"{settings.LINKBLOG_TITLE}: posts tagged {names}"

    def link(self, tags):
        return absolute_url(reverse("tag_page", args=[[tag.tag for tag in tags]]))

    def feed_url(self, tags):
        return absolute_url(reverse("tag_feed", args=[[tag.tag for tag in tags]]))


@app.route("/atom/<slug:name>/", name="feed")
def kind_feed(request, name):
    return KindFeed()(request, name)


@app.route("/tags/<tags:names>.atom", name="tag_feed")
@lowercase_tags
@too_many_tags_is_400
def tag_feed(request, names):
    return TagFeed()(request, names)


# --- Archives: a year's months, a month's and a day's posts, with links to their neighbours --


def archive_years(year=None):
    """The years and months with published posts (of one `year`, or all), oldest first, as
    months_by_year() gives them, each with its archive page's `url`: cached, since the index names
    every month of twenty years and reverse() was most of its rendering."""
    first, last = (date(year, 1, 1), date(year, 12, 1)) if year is not None else (None, None)
    years = months_by_year(published_by_month(LISTING, timezone.now(), first, last))
    for row in years:
        row["url"] = cached_reverse("archive_year", row["year"])
        for month in row["months"]:
            month["url"] = cached_reverse("archive_month", row["year"], month["name"])
    return years


ARCHIVE_PAGES = ("archive_year", "archive_month", "archive_day")


def archive_link(moment, depth):
    """The archive page of the year (depth 1), month (2) or day (3) that `moment` falls in."""
    moment = moment.astimezone(dt_timezone.utc)
    args = [moment.year, MONTHS[moment.month - 1], moment.day][:depth]
    return {"date": moment, "url": reverse(ARCHIVE_PAGES[depth - 1], args=args)}


def neighbours(start, end, depth):
    """Links to the archive pages of the nearest published posts before `start` and from `end` on."""
    earlier = published_listing(dates=Q(created__lt=start))[:1]
    later = published_listing(dates=Q(created__gte=end)).reverse()[:1]
    return [rows and archive_link(rows[0]["created"], depth) for rows in (earlier, later)]


def archive_page(request, template, start, end, depth):
    """A month's or a day's posts, newest first and paginated: 404 if there are none."""
    page = listing_page(request, published_listing(dates=Q(created__gte=start, created__lt=end)))
    if not page.paginator.count:
        raise Http404("Nothing was published then")
    earlier, later = neighbours(start, end, depth)
    context = {"page": page, "start": start, "month": MONTHS[start.month - 1], "earlier": earlier, "later": later}
    return render(request, template, context)


@app.route("/archive/", name="archive_index")
def archive_index(request):
    years = archive_years()[::-1]  # newest year first, as everywhere on the site
    return render(request, "archive_index.html", {"years": years})


@app.route("/<int:year>/", name="archive_year")
@canonical_date_redirect
def archive_year(request, year):
    start, end = year_range(year)
    years = archive_years(year)
    if not years:
        raise Http404("Nothing was published that year")
    earlier, later = neighbours(start, end, depth=1)
    return render(request, "archive_year.html", {"year": years[0], "earlier": earlier, "later": later})


@app.route("/<int:year>/<str:month>/", name="archive_month")
@canonical_date_redirect
def archive_month(request, year, month):
    start, end = month_range(year, month)
    return archive_page(request, "archive_month.html", start, end, depth=2)


@app.route("/<int:year>/<str:month>/<int:day>/", name="archive_day")
@canonical_date_redirect
def archive_day(request, year, month, day):
    start, end = day_range(year, month, day)
    return archive_page(request, "archive_day.html", start, end, depth=3)


# --- Discovery: the tag cloud, random posts, sitemap, robots.txt ----------------------------

TOP_TAGS = 100
TAG_LIST_PAGE_SIZE = 200


@app.route("/tags/", name="tag_list")
def tag_list(request):
    """The most used tags as a cloud, an A–Z index and a filter box; with `?letter=`, `?q=` or
    `?all=1` the matching tags (or all of them) by name, 200 a page. Thousands of tags stay usable:
    the counts come from the tallies, and the database picks and pages the tags shown."""
    letter, q = request.GET.get("letter", "").lower(), request.GET.get("q", "").strip().lower()[:64]
    in_use = readable_tags()
    context = {"letter": letter, "q": q, "initials": TAG_INITIALS, "tag_count": in_use.count()}
    if letter in TAG_INITIALS or q or request.GET.get("all"):
        listed = in_use.filter(tags_matching(letter, q)).order_by("tag")
        context["page"] = requested_page(request, Paginator(listed, TAG_LIST_PAGE_SIZE))
    else:
        top = sorted(in_use.order_by("-post_count", "tag")[:TOP_TAGS], key=lambda tag: tag.tag)
        counts = [tag.post_count for tag in top] or [0]
        for tag in top:
            tag.size = cloud_size(tag.post_count, min(counts), max(counts))
        context["top"] = top
    return render(request, "tags.html", context)


@app.route("/random/<tags:names>/", name="random_post")
@never_cache
@lowercase_tags
@too_many_tags_is_400
def random_post(request, names):
    """A 302 to a random published post with this tag (or all of these tags)."""
    rows = published_listing(tags=tags_named(names))
    count = rows.count()
    if not count:
        raise Http404("No published post has this tag")
    row = rows[random.randrange(count)]
    return redirect(POST_MODELS[row["kind"]].objects.get(pk=row["pk"]))


SITEMAP_PAGE_SIZE = 2000  # URLs in each page of a section: a page of posts is one index range and 2,000 lookups


class SiteSitemap(Sitemap):
    """Sitemap URLs on LINKBLOG_BASE_URL, whatever host the request came in on."""

    limit = SITEMAP_PAGE_SIZE

    def get_protocol(self, protocol=None):
        return urlsplit(settings.LINKBLOG_BASE_URL).scheme

    def get_domain(self, site=None):
        base = urlsplit(settings.LINKBLOG_BASE_URL)
        return base.netloc + base.path  # a base URL may include a path: https://example.com/blog


class PostsToLinkPaginator(ListingPaginator):
    """Pages of listing rows as the posts behind them, each holding only what its URL and dates need."""

    def _get_page(self, rows, *args):
        return super()._get_page(load_posts(rows, POST_MODELS, only=("created", "slug", "updated")), *args)


class PostSitemap(SiteSitemap):
    """Every published post, newest first, from the listing store: counted by its tally, and each
    page an index range, where a list of every post took 4.6 s and 6 MB at 100,000 posts."""

    @property
    def paginator(self):
        return PostsToLinkPaginator(published_listing(), self.limit, count_published_posts)

    def lastmod(self, post):
        return post.last_modified

    def get_latest_lastmod(self):
        return None  # the index leaves it out: it would read every post's dates


class TagSitemap(SiteSitemap):
    def items(self):
        return readable_tags().order_by("tag")


class PageSitemap(SiteSitemap):
    """The home page, the tag cloud and the date archives: their paths."""

    def items(self):
        pages = [reverse("home"), reverse("tag_list"), reverse("archive_index")]
        for year in archive_years():
            pages += [year["url"], *(month["url"] for month in year["months"])]
        return pages

    def location(self, path):
        return path


SITEMAPS = {"pages": PageSitemap, "tags": TagSitemap, "posts": PostSitemap}


@app.route("/sitemap.xml", name="sitemap")
@x_robots_tag
def sitemap_index(request):
    """The sitemap index: every page of every section. Django's index view names the request's host;
    ours names LINKBLOG_BASE_URL, as every URL in the sections does."""
    pages = []
    for section, sitemap in SITEMAPS.items():
        url = absolute_url(reverse("sitemap_section", args=[section]))
        pages += [SitemapIndexItem(url if number == 1 else f"{url}?p={number}") for number in sitemap().paginator.page_range]
    return TemplateResponse(request, "sitemap_index.xml", {"sitemaps": pages}, content_type="application/xml")


@app.route("/sitemap-<slug:section>.xml", name="sitemap_section")
def sitemap_section(request, section):
    """One page (`?p=`) of one section of the sitemap; 404 for another section or past the end."""
    return sitemap_view(request, SITEMAPS, section=section)


@app.route("/robots.txt", name="robots_txt")
def robots_txt(request):
    return render(request, "robots.txt", content_type="text/plain; charset=utf-8")


# --- Search page: /search/?q= with results, facets and highlighted words (engine: blogworks.search)


def search_posts(q, querysets=None):
    """A Search of published posts (or of the given {kind: queryset}), for the page and the API."""
    return Search(q, querysets if querysets is not None else published_posts(), POST_MODELS)


@app.route("/search/", name="search")
def search(request):
    q = request.GET.get("q", "")
    found = search_posts(q)
    context = {"q": q, "query": found.parsed, "page": None}
    if not found.parsed.is_empty:
        matches = found.page_rows
        page = requested_page(request, Paginator(matches.rows, settings.LINKBLOG_PAGE_SIZE))
        page.object_list = CARDS.search_results_for(request.user, page.object_list, found.parsed.highlight_words)
        context.update(page=page, matches=matches, facets=found.facets())
        if not page.paginator.count:
            context["did_you_mean"] = found.did_you_mean()
    return render(request, "search.html", context)


class SearchFeed(PostsFeed):
    """The newest posts a search finds (`/search.atom?q=...`): follow a search as you follow a tag."""

    def get_object(self, request):
        # The query becomes the feed's title, and XML cannot carry every character (text.NOT_IN_XML).
        return text.NOT_IN_XML.sub(" ", request.GET.get("q", "")[:MAX_QUERY_LENGTH])

    def querysets(self, q):
        return search_posts(q).matching

    def title(self, q):
        return f"{settings.LINKBLOG_TITLE}: search for {q}" if q.strip() else settings.LINKBLOG_TITLE

    def link(self, q):
        return absolute_url(reverse("search") + "?" + urlencode({"q": q}))

    def feed_url(self, q):
        return absolute_url(reverse("search_feed") + "?" + urlencode({"q": q}))


@app.route("/search.atom", name="search_feed")
def search_feed(request):
    return SearchFeed()(request)


# --- Fediverse: WebFinger, the blog's ActivityPub actor with its inbox and outbox, Webmention --
#
# Followers' servers find @author@host by WebFinger, read the actor, POST Follow, Undo, Delete and
# replies to the inbox (signed: blogworks.federation.verified_activity), and get every post pushed
# to them by the worker. Pages elsewhere that link a post tell /webmention/.

OUTBOX_PAGE_SIZE = 20
MAX_WEBMENTION_BYTES = 10_000


@app.route("/.well-known/webfinger", name="webfinger")
def webfinger(request):
    """`?resource=acct:author@host`: where the blog's actor is (404 for anyone else)."""
    resource = request.GET.get("resource", "")
    if not resource:
        return federation.plain_answer(400, "Ask for ?resource=acct:NAME@HOST.")
    jrd = activitypub.webfinger(resource, settings.LINKBLOG_AUTHOR_HANDLE, federation.site_host(), federation.actor_url(),
                                absolute_url(reverse("home")))
    if jrd is None:
        return federation.plain_answer(404, "No such account here.")
    response = HttpResponse(json.dumps(jrd), content_type="application/jrd+json")
    response["Access-Control-Allow-Origin"] = "*"  # web clients look accounts up from other origins
    return response


@app.route("/activitypub/actor/", name="ap_actor")
def actor(request):
    """The blog as a fediverse account, for servers (activity+json); people are sent to the home page."""
    if not federation.wants_activity_json(request):
        response = HttpResponseRedirect(reverse("home"))
    else:
        inbox = absolute_url(reverse("ap_inbox"))
        response = federation.activity_json(activitypub.actor_document(
            federation.actor_url(), settings.LINKBLOG_AUTHOR_HANDLE, settings.LINKBLOG_TITLE,
            f"<p>Links, notes and quotations by {escape(settings.LINKBLOG_AUTHOR)}.</p>", inbox,
            absolute_url(reverse("ap_outbox")), federation.followers_url(), ActorKey.current().public_pem,
            url=absolute_url(reverse("home")), shared_inbox=inbox))
    response["Vary"] = "Accept"  # (so the page cache keeps neither answer: blogworks.serving)
    return response


@app.route("/activitypub/followers/", name="ap_followers")
@never_cache
def followers(request):
    """How many follow the blog; who they are stays private."""
    return federation.activity_json(activitypub.ordered_collection(federation.followers_url(), Follower.objects.count()))


@app.route("/activitypub/outbox/", name="ap_outbox")
def outbox(request):
    """Every published post as a Create, newest first, in pages of OUTBOX_PAGE_SIZE (`?page=`)."""
    outbox_url = absolute_url(reverse("ap_outbox"))
    if "page" not in request.GET:
        return federation.activity_json(activitypub.ordered_collection(outbox_url, count_published_posts(), first=f"{outbox_url}?page=1"))
    page = requested_page(request, ListingPaginator(published_listing(), OUTBOX_PAGE_SIZE, count_published_posts))
    return federation.activity_json(federation.outbox_page(outbox_url, page, load_with_links(page.object_list)))


@app.route("/activitypub/<slug:kind>/<int:pk>/", name="ap_object")
def post_object(request, kind, pk):
    """A published post's ActivityPub object, at the id followers' servers know it by."""
    model = POST_MODELS.get(kind)
    post = model and model.objects.published().filter(pk=pk).prefetch_related("tags").first()
    if not post:
        raise Http404("No such post")
    if not federation.wants_activity_json(request):
        return redirect(post)
    response = federation.activity_json(activitypub.post_object(post.activitypub_object(), federation.actor_url(), federation.followers_url()))
    response["Vary"] = "Accept"
    return response


def post_at(url):
    """The published post one of our URLs names (its permalink or its ActivityPub id), or None."""
    return federation.post_at(url, POST_MODELS, find_post)


@app.route("/activitypub/inbox/", name="ap_inbox")
@csrf_exempt
@require_POST
@rate_limited("inbox", "LINKBLOG_INBOX_RATE_LIMIT")
def inbox(request):
    """Signed activities from other servers: 202 when taken, 4xx (and nothing stored) otherwise."""
    if federation.body_too_big(request, activitypub.MAX_INBOX_BYTES):
        return federation.plain_answer(413, f"An activity is at most {activitypub.MAX_INBOX_BYTES} bytes.")
    try:
        activity = federation.verified_activity(request)
        federation.receive(activity, post_at)
    except activitypub.InboxError as error:
        return federation.plain_answer(error.status, str(error))
    except SignatureError as error:
        return federation.plain_answer(401, f"Signature refused: {error}")
    return HttpResponse(status=202)


@app.route("/webmention/", name="webmention")
@csrf_exempt
@require_POST
@rate_limited("webmention", "LINKBLOG_WEBMENTION_RATE_LIMIT")
def webmention_endpoint(request):
    """`source` says it links `target` (one of our posts): checked by the worker, kept for approval."""
    if federation.body_too_big(request, MAX_WEBMENTION_BYTES):
        return federation.plain_answer(413, f"A Webmention is at most {MAX_WEBMENTION_BYTES} bytes.")
    source, target = request.POST.get("source", ""), request.POST.get("target", "")
    try:
        webmention.validate_request(source, target, {federation.site_host()})
    except webmention.WebmentionError as error:
        return federation.plain_answer(400, f"Webmention refused: {error}.")
    post = post_at(target) if max(len(source), len(target)) <= 1000 else None
    if post is None:
        return federation.plain_answer(400, "Webmention refused: the target is not a post of this blog.")
    federation.receive_webmention.enqueue(source, target, post.kind, post.pk)
    return federation.plain_answer(202, "Accepted: the source will be checked, then shown once the author approves.")


# --- API: a JSON API under /api/ (django-ninja): read, write, tags, tokens ----------------------
#
# Reads of published posts are public; writes need `Authorization: Bearer <token>` (tokens made by
# `python linkblog.py token USERNAME`) or a logged-in staff session, and the Django permission for
# the change. Every mistake gets a 4xx with a JSON body {"detail": ..., "errors": [{field, message}]}.


API_PAGE_SIZE = 30
API_MAX_PAGE_SIZE = 200
WRITERS = [BearerToken(ApiToken), StaffSession()]
READERS = [*WRITERS, Anonymous()]


api = LinkblogAPI(
    title="linkblog API",
    version="1.0",
    description="Read and write the blog's entries, blogmarks, quotations and tags.",
    urls_namespace="api",
    auth=WRITERS,
    docs=Swagger(settings={"validatorUrl": None}),  # no call to an online validator: works offline
)


# Schemas: what the API reads and writes. Inputs mirror the models' rules so the schema tells the truth.


PostId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
TagInPath = Annotated[str, PathParam(pattern=TAG_PATTERN, max_length=64)]

# Links are checked by the model (blogworks.rules.web_url), which percent-encodes them as a browser does.
URL_RULE = f"an http(s) URL, stored percent-encoded (at most {rules.MAX_URL_LENGTH:,} characters once encoded)"
Url = text_field(min_length=1, description=URL_RULE.capitalize(), examples=["https://example.com/a page"])
OptionalUrl = text_field(description=f"{URL_RULE.capitalize()}, or empty")


class PostIn(InputSchema):
    """Fields every kind shares. `created` defaults to now, `slug` is made from the title when empty."""

    created: When = Field(None, description="Defaults to now (or, when editing, the post's date)", json_schema_extra=drop_default)
    slug: Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_]*$", max_length=64)] = Field(
        "", description="Empty: keep the post's slug, or make one from the title for a new post"
    )
    tags: list[TagName] = Field(default=[], max_length=100)
    is_draft: StrictBool = False


class EntryIn(PostIn):
    title: text_field(255, 1)
    body: text_field(rules.MAX_TEXT_LENGTH, 1, description="Markdown")


class BlogmarkIn(PostIn):
    link_url: Url
    link_title: text_field(255, 1)
    via_url: OptionalUrl = ""
    via_title: text_field(255) = ""
    commentary: text_field(rules.MAX_TEXT_LENGTH, description="Markdown") = ""


class QuotationIn(PostIn):
    quotation: text_field(rules.MAX_TEXT_LENGTH, 1, description="Markdown")
    source: text_field(255, 1)
    source_url: OptionalUrl = ""


class LinkOut(Schema):
    url: str
    state: Literal["alive", "suspect", "dead", "moved"] = Field(description="From the link checks: dead only after failures days apart")
    archived_url: str = Field(description="A copy in the web archive, or empty")
    final_url: str = Field(description="Where a moved link leads now, or empty")
    last_checked: Optional[datetime]


class PostOut(Schema):
    id: int
    created: datetime
    slug: str
    tags: list[str]
    is_draft: bool
    url: str = Field(description="The post's permalink")
    html: str = Field(description="The rendered, sanitized HTML")
    links: list[LinkOut] = Field(description="The URLs it links to, with their state from the link checks")

    @staticmethod
    def resolve_tags(post):
        return [tag.tag for tag in post.tags.all()]

    @staticmethod
    def resolve_links(post):
        return post.known_links

    @staticmethod
    def resolve_url(post):
        return settings.LINKBLOG_BASE_URL + post.get_absolute_url()

    @staticmethod
    def resolve_type(post):  # each kind's schema declares `type` as its own literal
        return post.kind


class EntryOut(PostOut):
    type: Literal["entry"]
    title: str
    body: str
    excerpt_html: str
    word_count: int


class BlogmarkOut(PostOut):
    type: Literal["blogmark"]
    link_url: str
    link_title: str
    via_url: str
    via_title: str
    commentary: str


class QuotationOut(PostOut):
    type: Literal["quotation"]
    quotation: str
    source: str
    source_url: str


Item = Annotated[Union[Annotated[EntryOut, Variant("entry")], Annotated[BlogmarkOut, Variant("blogmark")],
                       Annotated[QuotationOut, Variant("quotation")]], Discriminator(kind_of_item)]
ITEM = TypeAdapter(Item)  # an item to JSON and back, for the stored cards


class Page(Schema):
    """Which slice of a list to return: `limit` posts after skipping `offset`, newest first."""

    limit: int = Field(API_PAGE_SIZE, ge=1, le=API_MAX_PAGE_SIZE, description=f"At most {API_MAX_PAGE_SIZE}; more is refused with 422")
    offset: int = Field(0, ge=0, le=10**9)


class PostFilters(Schema):
    tag: list[TagName] = Field([], max_length=10, description="Only posts with every one of these tags (repeatable, at most 10)")
    year: Optional[int] = Field(None, ge=1, le=9999)
    month: Optional[int] = Field(None, ge=1, le=12)
    since: Optional[When] = Field(None, description="Only posts created at or after this time")
    before: Optional[When] = Field(None, description="Only posts created before this time")
    is_draft: Optional[bool] = Field(None, description="true: only drafts, false: only published. Needs auth.")

    def narrow(self, posts):
        """The filters only one kind has (see BlogmarkFilters)."""
        return posts


class BlogmarkFilters(PostFilters):
    link_url: str = Field("", max_length=1000, description="Only blogmarks of this URL, as typed or stored: is it blogged already?")

    def narrow(self, posts):
        return Blogmark.of_link(posts, self.link_url) if self.link_url else posts


class ItemFilters(PostFilters):
    type: list[Literal["entry", "blogmark", "quotation"]] = Field([], description="Only these kinds (repeatable)")
    q: str = Field(
        "", max_length=MAX_QUERY_LENGTH,
        description='A search, as on /search/: words, "phrases", -word, tag:, type:, year:, from:, to:. '
        "With q, items come best match first.",
    )


class ItemsPage(Schema):
    count: int = Field(description="How many posts match, over all pages")
    items: list[Item]


class TagOut(Schema):
    tag: str
    description: str
    description_html: str
    post_count: int = Field(description="Published posts with this tag")
    url: str

    @staticmethod
    def resolve_url(tag):
        return settings.LINKBLOG_BASE_URL + tag.get_absolute_url()


class TagsPage(Schema):
    count: int
    items: list[TagOut]


class TagPatch(InputSchema):
    description: text_field(rules.MAX_TEXT_LENGTH, description="Markdown, shown on the tag page")


class TagRename(InputSchema):
    to: TagName


class TagMerge(InputSchema):
    into: TagName


# Reading.


def filter_posts(request, model, filters):
    posts = visible_posts(request, model).filter(draft_and_date_filter(request, filters))
    if filters.tag:
        posts = with_every_tag(posts, filters.tag)
    return filters.narrow(posts)


@api.get("/items", auth=READERS, response=responses(200, ItemsPage, *READ_ERRORS), tags=["Posts of every kind"],
         summary="List posts of every kind")
def list_items(request, filters: Query[ItemFilters], page: Query[Page]):
    """Posts of every kind, newest first (best match first with `q`), each with its `type`. Drafts only
    for authenticated callers."""
    kinds = list(dict.fromkeys(filters.type or POST_MODELS))
    if filters.q.strip():
        querysets = {kind: filter_posts(request, POST_MODELS[kind], filters) for kind in kinds}
        return page_of(search_posts(filters.q, querysets).results(), page, load_with_links)
    rows, count = listed_items(request, kinds, filters, LISTING, tags_by_name, count_tagged, count_published_posts, PostQuerySet.published_filter)
    return {"count": 0, "items": []} if rows is None else stored_items_page(page_of(rows, page, CARDS.api_items, count))


def get_post(request, model, post_id):
    post = visible_posts(request, model).filter(pk=post_id).prefetch_related("tags").first()
    if post is None:
        raise ApiProblem(404, f"No {model.kind} with id {post_id}.")
    return post


def register_kind(model, schema_in, schema_out, path, filters_schema=PostFilters):
    """List, create, read, replace, update and delete endpoints for one kind of post."""
    kind = model.kind
    one = f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    schema_patch = patch_schema(schema_in)
    item_path = f"{path}/{{post_id}}"
    page_schema = type(f"{model.__name__}Page", (Schema,), {"__annotations__": {"count": int, "items": list[schema_out]}})

    def list_posts(request, filters: Query[filters_schema], page: Query[Page]):
        posts = filter_posts(request, model, filters).order_by("-created", "-pk").prefetch_related("tags")
        return page_of(posts, page, with_links)

    def create_post(request, payload: schema_in):
        require_permission(request, "add", model)
        return Status(201, save_post(request, model(), payload.dict(), Tag))

    def read_post(request, post_id: PostId):
        return get_post(request, model, post_id)

    def replace_post(request, post_id: PostId, payload: schema_in):
        require_permission(request, "change", model)
        return save_post(request, get_post(request, model, post_id), payload.dict(), Tag)

    def update_post(request, post_id: PostId, payload: schema_patch):
        require_permission(request, "change", model)
        return save_post(request, get_post(request, model, post_id), payload.dict(exclude_unset=True), Tag)

    def delete_post(request, post_id: PostId):
        require_permission(request, "delete", model)
        get_post(request, model, post_id).delete()
        return Status(204, None)

    label = {"tags": [model._meta.verbose_name_plural.capitalize()]}
    api.get(path, auth=READERS, response=responses(200, page_schema, *READ_ERRORS), operation_id=f"list_{model._meta.verbose_name_plural}",
            summary=f"List {model._meta.verbose_name_plural}", **label)(list_posts)
    api.post(path, response=responses(201, schema_out, *WRITE_ERRORS), operation_id=f"create_{kind}",
             summary=f"Create {one}", **label)(create_post)
    api.get(item_path, auth=READERS, response=responses(200, schema_out, 401, 404, 422), operation_id=f"get_{kind}",
            summary=f"Read {one}", **label)(read_post)
    api.put(item_path, response=responses(200, schema_out, *WRITE_ERRORS), operation_id=f"replace_{kind}",
            summary=f"Replace {one} (every field)", **label)(replace_post)
    api.patch(item_path, response=responses(200, schema_out, *WRITE_ERRORS), operation_id=f"update_{kind}",
              summary=f"Update some fields of {one}", **label)(update_post)
    api.delete(item_path, response=responses(204, None, 401, 403, 404, 422), operation_id=f"delete_{kind}",
               summary=f"Delete {one}", **label)(delete_post)


register_kind(Entry, EntryIn, EntryOut, "/entries")
register_kind(Blogmark, BlogmarkIn, BlogmarkOut, "/blogmarks", BlogmarkFilters)
register_kind(Quotation, QuotationIn, QuotationOut, "/quotations")


# Tags: list with counts, describe, rename and merge (old names redirect to the new tag page).

TAG_SORTS = {"name": ["tag"], "count": ["-post_count", "tag"]}


def visible_tags(request):
    """Every tag for a caller who may view tags and the drafts of every kind; readable ones for others."""
    user = caller(request)
    return tags_with_counts() if user and not missing_permissions(user, VIEW_EVERYTHING) else readable_tags()


def get_tag(name, tags=None):
    """The tag `name` among `tags` (by default all of them, with counts): 404 if there is none."""
    tag = (tags_with_counts() if tags is None else tags).filter(tag=name.lower()).first()
    if tag is None:
        raise ApiProblem(404, f"No tag “{name}”.")
    return tag


def with_count(tag):
    return get_tag(tag.tag)


@api.get("/tags", auth=READERS, response=responses(200, TagsPage, *READ_ERRORS), tags=["Tags"])
def list_tags(request, page: Query[Page], sort: Literal["name", "count"] = "name"):
    """Every tag with its number of published posts, by name or by count (most used first). Tags no
    published post carries are listed only to callers who may view tags and every kind's drafts."""
    return page_of(visible_tags(request).order_by(*TAG_SORTS[sort]), page)


@api.get("/tags/{tag}", auth=READERS, response=responses(200, TagOut, 401, 404, 422), tags=["Tags"])
def read_tag(request, tag: TagInPath):
    return get_tag(tag, visible_tags(request))


@api.patch("/tags/{tag}", response=responses(200, TagOut, *WRITE_ERRORS), tags=["Tags"])
def describe_tag(request, tag: TagInPath, payload: TagPatch):
    """Change a tag's description (Markdown)."""
    require_permission(request, "change", Tag)
    found = get_tag(tag)
    found.description = payload.description
    validate_with_model_rules(found)
    found.save()
    return with_count(found)


@api.post("/tags/{tag}/rename", response=responses(200, TagOut, *WRITE_ERRORS), tags=["Tags"])
def rename_tag(request, tag: TagInPath, payload: TagRename):
    """Give a tag a new name; its old page then redirects (301) to the new one. 409 if the name is taken."""
    require_permission(request, "change", Tag)
    found = get_tag(tag)
    try:
        tagging.rename(found, payload.to, TagRedirect)
    except tagging.TagNameTaken:
        raise ApiProblem(409, f"A tag “{payload.to}” already exists: merge into it instead.", [{"field": "to", "message": "Tag exists."}])
    return with_count(found)


@api.post("/tags/{tag}/merge", response=responses(200, TagOut, *WRITE_ERRORS), tags=["Tags"])
def merge_tag(request, tag: TagInPath, payload: TagMerge):
    """Move every post of this tag to another tag and delete this one; its page redirects to the other."""
    require_permission(request, "change", Tag)
    require_permission(request, "delete", Tag)
    source, target = get_tag(tag), get_tag(payload.into)
    if source.pk == target.pk:
        raise ApiProblem(422, "A tag cannot be merged into itself.", [{"field": "into", "message": "Same tag."}])
    tagging.merge(source, target, TagRedirect, POST_MODELS, store_posts_listing)
    posts_changed.send(sender=Tag)
    return with_count(target)


app.route("api/", include=api.urls)


# --- Serving: the WSGI handler production runs, and the hello-world page benchmarks compare with --


def bench_hello(request):
    """The cheapest page the app can serve: same middleware, no database, no template."""
    return HttpResponse("Hello, world!\n", content_type="text/plain")


if config.env_bool("LINKBLOG_BENCH", False):  # never routed in a normal deployment
    app.route("/bench/hello/", name="bench_hello")(bench_hello)


def wsgi_application():
    """The production handler: `gunicorn 'linkblog:wsgi_application()'` builds it once per worker.

    (nanodjango's own `app.wsgi` rebuilds Django's handler on every request.)
    """
    app._prepare()
    return get_wsgi_application()


# --- Admin tools: import, export and the bookmarklet -----------------------------------------


def import_posts(stream, format=None, **options):
    """Import a file (binary; NDJSON is read line by line) into the blog: an ImportReport (blogworks.importer)."""
    return import_file(stream, POST_MODELS, Tag, format, after_writing=keep_in_step, **options)


def keep_in_step(ids_by_kind):
    """After a bulk write, which sends no signals: these posts' ({kind: pks}) listing and link rows."""
    store_posts_listing(ids_by_kind)
    linkstore.refresh_post_links(POST_MODELS, Link, PostLink, ids_by_kind)


def refresh_post_links():
    linkstore.refresh_all_post_links(POST_MODELS, Link, PostLink)


def export(format="ndjson", include_drafts=True):
    """The chunks of an export: the whole blog as NDJSON, or the blogmarks as a bookmarks file."""
    if format == "netscape":
        return formats.export_netscape(Blogmark, include_drafts)
    return formats.export_ndjson(POST_MODELS, Tag.objects.all() if include_drafts else readable_tags(), include_drafts)


# Unknown /admin/... URLs fall through to the routes below instead of the admin's own 404 view.
admin.site.final_catch_all_view = False


# Who may use which tool: the Django permissions of what it touches, never merely being staff.
EXPORT_NEEDS = VIEW_EVERYTHING  # an export holds every draft
IMPORT_NEEDS = [("add", Tag), ("change", Tag)]  # and add and change of each kind in the file: import_needs()
BOOKMARKLET_NEEDS = [("add", Blogmark)]
TOOL_NEEDS = {"import": IMPORT_NEEDS, "export": EXPORT_NEEDS, "bookmarklet": BOOKMARKLET_NEEDS}


@app.templatetag.simple_tag(name="admin_tools", takes_context=True)
def admin_tools(context):
    """{% admin_tools as tools %}: the tools the logged-in user may use, for the admin index's links."""
    return tools_for(context["request"].user, TOOL_NEEDS)


def authorize_import(user, report):
    """Refuse (and so roll back) an import that creates or changes what `user` may not."""
    missing = missing_permissions(user, import_needs(report, POST_MODELS, IMPORT_NEEDS))
    if missing:
        raise PermissionDenied(missing)


def import_page(request, status=200, **context):
    context = {"form": ImportForm(), "export_form": ExportForm(), "tools": tools_for(request.user, TOOL_NEEDS), **context}
    return admin_page(request, "admin/linkblog/import_export.html", status, title="Import and export", **context)


@app.route("admin/linkblog/import/", name="admin_import")
@staff_member_required
def admin_import(request):
    """Upload a file to import (same rules and summary as the command line), or download an export."""
    tools = tools_for(request.user, TOOL_NEEDS)
    if not tools["import"] and (request.method == "POST" or not tools["export"]):
        return permission_refused(request, missing_permissions(request.user, IMPORT_NEEDS))
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    try:
        report, error, status = run_import(form, partial(import_posts, authorize=partial(authorize_import, request.user)))
    except PermissionDenied as refusal:
        return permission_refused(request, refusal.args[0])
    return import_page(request, status, form=form, report=report, error=error)


@app.route("admin/linkblog/export/", name="admin_export")
@staff_member_required
@needs_permissions(EXPORT_NEEDS, permission_refused)
def admin_export(request):
    """Download the whole blog as NDJSON, or the blogmarks as a bookmarks file."""
    form = ExportForm(request.GET)
    if not form.is_valid():
        return import_page(request, 400, export_form=form, error="Choose an export format.")
    return export_download(export(form.cleaned_data["format"], form.cleaned_data["drafts"]), form.cleaned_data["format"])


@app.route("admin/linkblog/bookmarklet/", name="admin_bookmarklet")
@staff_member_required
@needs_permissions(BOOKMARKLET_NEEDS, permission_refused)
def admin_bookmarklet(request):
    """A link to drag to the bookmarks bar: it opens "Blog this" (below) with the page's address,
    title and selected text."""
    blog_this_url = request.build_absolute_uri(reverse("admin_blog_this"))
    return admin_page(request, "admin/linkblog/bookmarklet.html", title="Bookmarklet", blog_this_url=blog_this_url)


@app.route("admin/linkblog/blog-this/", name="admin_blog_this")
@staff_member_required
@needs_permissions(BOOKMARKLET_NEEDS, permission_refused)
def admin_blog_this(request):
    """What the bookmarklet opens: a blogmark of the page, a quotation of the selected text, and a
    warning (with links) when the page's address is blogged already (drafts only for those who may
    see them). The address is linked only when it is a web link."""
    url, title, selection = (request.GET.get(name, "")[:5000] for name in ("url", "title", "selection"))
    add_blogmark = reverse("admin:linkblog_blogmark_add") + "?" + urlencode({"link_url": url, "link_title": title[:255], "commentary": selection})
    add_quotation = reverse("admin:linkblog_quotation_add") + "?" + urlencode({"quotation": selection, "source": title[:255], "source_url": url})
    blogged = Blogmark.of_link(posts_visible_to(request.user, Blogmark), url).order_by("-created")[:5] if url else []
    return admin_page(request, "admin/linkblog/blog_this.html", title="Blog this", url=url, page_title=title, selection=selection,
                      web_link=rules.stored_web_url(url), add_blogmark=add_blogmark, add_quotation=add_quotation, blogged=blogged)


@app.route("admin/linkblog/preview/", name="admin_markdown_preview")
@staff_member_required
def admin_markdown_preview(request):
    """POST `text`: its HTML as the site will show it (the site's own renderer and sanitizer), for
    the live preview beside the admin's Markdown fields (static/linkblog-admin.js)."""
    if request.method != "POST":
        return HttpResponse("POST the Markdown as `text`.", status=405, content_type="text/plain", headers={"Allow": "POST"})
    return HttpResponse(text.render_markdown(request.POST.get("text", "")), content_type="text/html; charset=utf-8")


# --- Commands: `python linkblog.py NAME ...` for our own commands, nanodjango's for the rest ------


@cli.command
def token_command(args):
    """`python linkblog.py token USERNAME [--name NAME]`: make an API token and print it, once."""
    from django.contrib.auth import get_user_model

    options = cli.token_arguments().parse_args(args)
    user = get_user_model().objects.filter(username=options.username).first()
    if user is None:
        print(f"linkblog: no user named “{options.username}”.", file=sys.stderr)
        return 2
    print(ApiToken.issue(user, options.name[:100]))
    return 0


@cli.command
def import_command(args):
    """`python linkblog.py import FILE`: one transaction; a summary on stdout, problems on stderr."""
    return cli.run_import(cli.import_arguments().parse_args(args), import_posts, POST_MODELS)


@cli.command
def export_command(args):
    """`python linkblog.py export [FILE]`: the whole blog (or its blogmarks as bookmarks) to a file or stdout."""
    return cli.run_export(cli.export_arguments().parse_args(args), export)


@cli.command
def serve_production_command(args):
    """Migrate, collect static files, start a fresh page cache, then become gunicorn.

    `python linkblog.py serve-production [HOST:PORT] [GUNICORN OPTIONS...]`; HOST:PORT defaults to
    127.0.0.1:8000 (a reverse proxy in front), workers come from WEB_CONCURRENCY (default 2).
    """
    bind = args.pop(0) if args and not args[0].startswith("-") else "127.0.0.1:8000"
    config.secret_key(debug=False)
    os.environ["DJANGO_DEBUG"] = "0"
    call_command("migrate", interactive=False, verbosity=1)
    call_command("collectstatic", interactive=False, verbosity=0)
    forget_cached_pages()
    sys.stdout.flush()
    os.execv(sys.executable, cli.gunicorn_arguments(BASE_DIR, bind, config.env_int("WEB_CONCURRENCY", 2), args))


@cli.command
def check_links_command(args):
    """`python linkblog.py check-links`: check every distinct URL once, politely, storing each result
    as it comes (Ctrl-C, then run it again: it carries on), then classify every link."""
    return cli.run_link_checks(cli.check_links_arguments().parse_args(args), refresh_post_links, (Link, LinkCheck, LinkCheckRun))


@cli.command
def worker_command(args):
    """`python linkblog.py worker [--batch]`: run background jobs (link checks, archiving, deliveries)
    until stopped; --batch runs what is due and exits. Options are django-tasks' `db_worker`'s."""
    options = ["--no-reload", "--no-startup-delay", *args] if "--reload" not in args else args
    call_command("db_worker", *options)
    return 0


def main(argv):
    """Run one of our commands, or hand the arguments to nanodjango (`run`, `manage`, `serve`, ...)."""
    if argv and argv[0] in cli.COMMANDS:
        app._prepare()
        return cli.COMMANDS[argv[0]](argv[1:])
    app.invoke(default="run 127.0.0.1:8000")


app.pm.register(ConvertPlugin())

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
