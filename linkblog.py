"""
linkblog: a personal link blog in one nanodjango file.

Three kinds of post (entries, blogmarks and quotations), all tagged, mixed
together on the home page and on every tag page, newest first.

Read it top to bottom; each section starts with a `# --- Name:` line:

    Settings        the environment decides everything a deployment changes
    Markdown        rendered once on save, sanitized with an allowlist
    Models          Tag, and Entry / Blogmark / Quotation on one abstract Post
    Admin           where the author writes
    Pages           home, tag pages (and combinations), permalinks
    Feeds           Atom for everything, each kind, each tag
    Archives        years, months, days
    Search          query language, ranked search, its index, facets, the page
    Discovery       related tags, tag cloud, random, sitemap, robots.txt, cards
    API             /api/ with django-ninja: read, write, tags, tokens
    Serving         security headers, the shared page cache, the WSGI handler
    Import/export   NDJSON, bookmarks, Pinboard and feeds; the admin pages
    Commands        `python linkblog.py token|import|export|serve-production`
    Convert         hooks that keep `nanodjango convert` working

Templates live in templates/ (one base, one partial per kind of post), the
stylesheet in static/, the migrations in migrations/.

    nanodjango run linkblog.py          # development server, migrates first
"""

import ast
import hashlib
import math
import os
import random
import re
import sys
import threading
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from functools import lru_cache, wraps
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import markdown
import nh3
from nanodjango import Django, hookimpl

BASE_DIR = Path(__file__).resolve().parent


# --- Settings: everything a deployment changes comes from the environment -----------------

INSECURE_SECRET_KEY = "linkblog-insecure-development-key"


def env_bool(name, default):
    """Read a yes/no environment variable: 1/true/yes/on or 0/false/no/off."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


def env_list(name, default):
    """Read a comma-separated environment variable into a list."""
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()] or default


def cached_template_loaders(templates):
    """nanodjango lists its template loaders bare, so every include is parsed again on every request;
    Django's cached loader keeps each parsed template (and runserver still reloads edited ones)."""
    options = templates[0]["OPTIONS"]
    options["loaders"] = [("django.template.loaders.cached.Loader", options["loaders"])]
    return templates


def database_settings():
    """DATABASE_URL when given (PostgreSQL), otherwise the embedded SQLite file."""
    default_url = "sqlite:///" + str(BASE_DIR / "db.sqlite3")
    config = dj_database_url.parse(os.environ.get("DATABASE_URL", default_url))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {
            # A web workload on SQLite: readers never block the writer, a writer waits
            # its turn instead of failing, and a transaction takes the write lock up front.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 5,
            "transaction_mode": "IMMEDIATE",
        }
    else:
        config["CONN_HEALTH_CHECKS"] = True
    # A worker keeps its connection between requests: a new one costs about a millisecond (for
    # SQLite: opening the file, the PRAGMAs above, and starting with an empty page cache).
    config["CONN_MAX_AGE"] = 60
    return config


def env_int(name, default):
    """Read a whole-number environment variable; a malformed one stops the app with a clear message."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        sys.exit(f"linkblog: {name} must be a whole number, not {value!r}")


def secret_key(debug):
    """DJANGO_SECRET_KEY; production (DEBUG off) never runs with the well-known development key."""
    key = os.environ.get("DJANGO_SECRET_KEY", "").strip() or INSECURE_SECRET_KEY
    if not debug and key == INSECURE_SECRET_KEY:
        sys.exit(
            "linkblog: refusing to start with DJANGO_DEBUG off and no DJANGO_SECRET_KEY. "
            'Set one, e.g. DJANGO_SECRET_KEY="$(python -c \'import secrets; print(secrets.token_urlsafe(50))\')"'
        )
    return key


def cache_settings():
    """The cache every worker shares: a DiskCache directory by default, Redis or memcached by URL."""
    url = os.environ.get("LINKBLOG_CACHE_URL", "").strip()
    scheme = url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        config = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    elif scheme == "memcached":
        config = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": url.partition("://")[2]}
    elif url:
        sys.exit(f"linkblog: LINKBLOG_CACHE_URL must start with redis://, rediss:// or memcached://, not {url!r}")
    else:
        directory = os.environ.get("LINKBLOG_CACHE_DIR") or str(BASE_DIR / "cache")
        # DiskCache keeps entries in SQLite files: shared by every worker process on this machine.
        config = {"BACKEND": "linkblog.PersistentDiskCache", "LOCATION": directory, "DATABASE_TIMEOUT": 1.0}
    return {"default": {**config, "KEY_PREFIX": "linkblog", "TIMEOUT": 3600}}


def proxy_ssl_header():
    """The header a TLS-terminating proxy sets to say the request came over HTTPS ("" trusts none)."""
    header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto").strip()
    if not header:
        return None
    return ("HTTP_" + header.upper().replace("-", "_"), "https")


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = secret_key(DEBUG)
PRODUCTION = not DEBUG

# A Content-Security-Policy our own pages and the admin satisfy: no inline scripts or styles anywhere,
# images from anywhere over HTTPS (posts may show them), nothing may frame the site.
DEFAULT_CSP = (
    "default-src 'self'; img-src 'self' https: data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

app = Django(
    DEBUG=DEBUG,
    SECRET_KEY=SECRET_KEY,
    ALLOWED_HOSTS=env_list("DJANGO_ALLOWED_HOSTS", ["*"] if DEBUG else ["localhost", "127.0.0.1"]),
    CSRF_TRUSTED_ORIGINS=env_list("CSRF_TRUSTED_ORIGINS", []),
    DATABASES={"default": database_settings()},
    TEMPLATES=cached_template_loaders,
    CACHES=cache_settings(),
    # Security headers and HTTPS. In production the site sits behind a proxy that terminates TLS.
    # The proxy redirects HTTP to HTTPS itself (README), so the app answers what reaches it.
    SECURE_SSL_REDIRECT=env_bool("DJANGO_SECURE_SSL_REDIRECT", False),
    SECURE_PROXY_SSL_HEADER=proxy_ssl_header(),
    SECURE_HSTS_SECONDS=env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0),
    SECURE_HSTS_INCLUDE_SUBDOMAINS=env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
    SECURE_HSTS_PRELOAD=env_bool("DJANGO_SECURE_HSTS_PRELOAD", False),
    SECURE_REFERRER_POLICY="strict-origin-when-cross-origin",
    SESSION_COOKIE_SECURE=env_bool("DJANGO_SECURE_COOKIES", PRODUCTION),
    CSRF_COOKIE_SECURE=env_bool("DJANGO_SECURE_COOKIES", PRODUCTION),
    # Deliberate, so `check --deploy` does not nag: the proxy does the HTTPS redirect (W008), and
    # subdomains and the browsers' preload list are the domain owner's choice (W005, W021; env above).
    SILENCED_SYSTEM_CHECKS=["security.W008", "security.W005", "security.W021"],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "linkblog.ContentSecurityPolicyMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "linkblog.AnonymousPageCacheMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    ADMIN_URL="admin/",
    FORMS_URLFIELD_ASSUME_HTTPS=True,
    EXTRA_APPS=["django.contrib.humanize", "django.contrib.sitemaps", "ninja"],  # ninja: the API docs UI, served locally
    TIME_ZONE="UTC",
    LINKBLOG_TITLE=os.environ.get("LINKBLOG_TITLE", "linkblog"),
    LINKBLOG_AUTHOR=os.environ.get("LINKBLOG_AUTHOR", "The author"),
    LINKBLOG_BASE_URL=os.environ.get("LINKBLOG_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
    LINKBLOG_PAGE_SIZE=30,
    LINKBLOG_CSP=os.environ.get("LINKBLOG_CSP", DEFAULT_CSP),
    LINKBLOG_PAGE_CACHE=env_bool("LINKBLOG_PAGE_CACHE", PRODUCTION),
    LINKBLOG_PAGE_MAX_AGE=env_int("LINKBLOG_PAGE_MAX_AGE", 60),
)

from django.apps import apps as django_apps  # noqa: E402  (configured by Django() above)
from django.conf import settings  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator  # noqa: E402
from django.db import connection, connections, models, transaction  # noqa: E402
from django.db.models import Count, OuterRef, Q, Subquery, Value  # noqa: E402
from django.db.models.expressions import RawSQL  # noqa: E402
from django.db.models.functions import Cast, Coalesce, ExtractYear, Substr  # noqa: E402
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_migrate  # noqa: E402
from django.dispatch import Signal  # noqa: E402
from django.http import Http404, HttpResponse  # noqa: E402
from django.shortcuts import redirect, render  # noqa: E402
from django.urls import register_converter, reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.cache import patch_cache_control  # noqa: E402
from django.utils.functional import cached_property  # noqa: E402
from django.utils.html import conditional_escape, escape, format_html, strip_tags  # noqa: E402
from django.utils.safestring import mark_safe  # noqa: E402
from django.utils.text import slugify  # noqa: E402

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- Markdown: rendered once when a post is saved, sanitized with an allowlist -------------

MARKDOWN_EXTENSIONS = ["extra", "sane_lists"]
SAFE_URL_SCHEMES = {"http", "https", "mailto"}
SAFE_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p",
    "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
}
SAFE_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "code": {"class"},
    "li": {"id"},
    "sup": {"id"},
    "ol": {"start"},
}


markdown_converters = threading.local()


def markdown_converter():
    """This thread's Markdown converter: building one costs as much as converting a post, so reuse it."""
    if not hasattr(markdown_converters, "converter"):
        markdown_converters.converter = markdown.Markdown(extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return markdown_converters.converter.reset()


def render_markdown(text):
    """Markdown to HTML that is safe to show: no scripts, event handlers or javascript: URLs."""
    return sanitize_html(markdown_converter().convert(text or ""))


def sanitize_html(html):
    """HTML from anywhere (rendered Markdown, an imported feed) cut down to the safe allowlist."""
    return nh3.clean(
        html or "",
        tags=SAFE_TAGS,
        attributes=SAFE_ATTRIBUTES,
        url_schemes=SAFE_URL_SCHEMES,
        link_rel="noopener",
    )


def is_safe_url(url):
    """True for the http(s) and mailto links a post may point to; never javascript: or data:."""
    scheme, colon, _ = (url or "").partition(":")
    return bool(colon) and scheme.strip().lower() in SAFE_URL_SCHEMES


class FirstBlockFinder(HTMLParser):
    """Finds where the first top-level element of an HTML fragment ends."""

    VOID = {"br", "hr", "img"}

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.depth = 0
        self.end = None

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.depth += 1
        elif self.depth == 0 and self.end is None:
            self.end = self.getpos()

    def handle_endtag(self, tag):
        self.depth -= 1
        if self.depth == 0 and self.end is None:
            self.end = self.getpos()


def first_block(html):
    """The first paragraph (or other top-level block) of rendered HTML."""
    finder = FirstBlockFinder()
    finder.feed(html)
    if finder.end is None:
        return html
    line, column = finder.end
    lines = html.splitlines(keepends=True)
    offset = sum(len(text) for text in lines[: line - 1]) + column
    return html[: html.index(">", offset) + 1]


@app.templatetag.filter(name="safe_url")
def safe_url(url):
    """A URL fit for an href: http(s) and mailto pass, anything else (javascript:, data:) is dropped."""
    return url if is_safe_url(url) else ""


@app.templatetag.simple_tag(name="site")
def site_setting(name):
    """{% site "title" %}: the site's title, author or base URL from the LINKBLOG_ settings."""
    return getattr(settings, f"LINKBLOG_{name.upper()}")


def plain_text(html):
    """Visible words of rendered HTML, for word counts and descriptions."""
    return " ".join(strip_tags(html).split())


# --- Models: tags, and three kinds of post sharing one abstract base ----------------------


@lru_cache(maxsize=20_000)
def cached_reverse(name, *args):
    """reverse() for the links every listing repeats (each post's and each tag's): a URL depends only
    on its name and arguments, and reverse() cost more than the rest of rendering a post."""
    return reverse(name, args=args)


class Tag(models.Model):
    tag = models.SlugField(max_length=64, unique=True, help_text="Lower case, e.g. django")
    description = models.TextField(blank=True, help_text="Markdown, shown on the tag page")
    description_html = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["tag"]

    def __str__(self):
        return self.tag

    def clean(self):
        self.tag = self.tag.strip().lower()  # before the uniqueness check, so "Django" clashes with "django"

    def save(self, *args, **kwargs):
        self.tag = self.tag.strip().lower()
        self.description_html = render_markdown(self.description)
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return cached_reverse("tag_page", self.tag)


class TagRedirect(models.Model):
    """An old tag name left behind by a rename or merge: its page redirects to `tag`."""

    old_tag = models.SlugField(max_length=64, unique=True)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="redirects")

    def __str__(self):
        return f"{self.old_tag} → {self.tag}"



class Post(models.Model):
    """What every kind of post shares: date, slug, tags, draft flag and its rendered HTML."""

    created = models.DateTimeField(default=timezone.now, db_index=True)
    slug = models.SlugField(max_length=64, blank=True, help_text="Made from the title when empty")
    tags = models.ManyToManyField(Tag, blank=True)
    is_draft = models.BooleanField(default=False, db_index=True, help_text="Drafts are never shown")
    html = models.TextField(blank=True, editable=False)

    kind = None  # "entry", "blogmark" or "quotation": set by each kind
    slug_source_field = None
    markdown_field = None

    class Meta:
        abstract = True
        ordering = ["-created", "-id"]
        constraints = [
            # Every post has a permalink: bulk writes that skip save() cannot store an empty slug.
            models.CheckConstraint(condition=~Q(slug=""), name="%(app_label)s_%(class)s_has_slug"),
        ]

    def __str__(self):
        return getattr(self, self.slug_source_field) or self.slug

    @property
    def partial_template(self):
        return f"_{self.kind}.html"

    def get_absolute_url(self):
        created = self.created.astimezone(dt_timezone.utc)
        return cached_reverse("permalink", created.year, MONTHS[created.month - 1], created.day, self.slug)

    def render(self):
        """Store everything pages show, so that a page view never runs Markdown."""
        for name, value in self.rendered(getattr(self, self.markdown_field)).items():
            setattr(self, name, value)

    @classmethod
    def rendered(cls, text):
        """{field: value} of what a post of this kind stores from its Markdown `text`."""
        return {"html": render_markdown(text)}

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

    def make_unique_slug(self):
        """A slug from the title that no post of any kind uses on the same day."""
        base = self.slug_base()
        taken = set()
        for model in POST_MODELS.values():
            taken.update(self.same_day_posts(model).filter(slug__startswith=base).values_list("slug", flat=True))
        slug, number = base, 2
        while slug in taken:
            slug, number = f"{base}-{number}", number + 1
        return slug

    def fill_in_defaults(self):
        """The date and slug a post gets when its author leaves them empty."""
        if self.created is None:
            self.created = timezone.now()
        if not self.slug:
            self.slug = self.make_unique_slug()

    def clean(self):
        super().clean()
        if self.created and self.created.astimezone(dt_timezone.utc).date() == date.max:
            # Slugs are unique per day, and 9999-12-31 has no next day to end it.
            raise ValidationError({"created": "A post's day must end before the year 10000."})
        if self.slug and self.same_day_posts(type(self)).filter(slug=self.slug).exists():
            raise ValidationError(
                {"slug": f"Another {self.kind} on this day already uses the slug “{self.slug}”."}
            )
        self.fill_in_defaults()

    def save(self, *args, **kwargs):
        self.fill_in_defaults()
        self.render()
        super().save(*args, **kwargs)


class Entry(Post):
    title = models.CharField(max_length=255)
    body = models.TextField(help_text="Markdown")
    excerpt_html = models.TextField(blank=True, editable=False)
    word_count = models.PositiveIntegerField(default=0, editable=False)

    kind = "entry"
    slug_source_field = "title"
    markdown_field = "body"

    class Meta(Post.Meta):
        verbose_name_plural = "entries"

    @classmethod
    def rendered(cls, text):
        html = render_markdown(text)
        return {"html": html, "excerpt_html": first_block(html), "word_count": len(plain_text(html).split())}

    @property
    def is_truncated(self):
        return self.excerpt_html != self.html


class Blogmark(Post):
    link_url = models.URLField(max_length=1000)
    link_title = models.CharField(max_length=255)
    via_url = models.URLField(max_length=1000, blank=True)
    via_title = models.CharField(max_length=255, blank=True)
    commentary = models.TextField(blank=True, help_text="Markdown")

    kind = "blogmark"
    slug_source_field = "link_title"
    markdown_field = "commentary"

    class Meta(Post.Meta):  # each kind names its Meta: nanodjango would otherwise replace the inherited one
        pass


class Quotation(Post):
    quotation = models.TextField(help_text="Markdown")
    source = models.CharField(max_length=255)
    source_url = models.URLField(max_length=1000, blank=True)

    kind = "quotation"
    slug_source_field = "source"
    markdown_field = "quotation"

    class Meta(Post.Meta):  # each kind names its Meta: nanodjango would otherwise replace the inherited one
        pass


POST_MODELS = {"entry": Entry, "blogmark": Blogmark, "quotation": Quotation}

# nanodjango never sets our app's models module, so Django's post_migrate handlers would skip
# the app: no content types and no permissions for these models (admin history and per-user
# permissions both need them).
django_apps.get_app_config(app.app_name).models_module = app.app_module

# Sent after any write that readers could see: a post or tag saved or deleted, a post's tags
# changed, and (explicitly, since bulk writes send no model signals) after an import.
posts_changed = Signal()


def announce_change(sender, **kwargs):
    posts_changed.send(sender=sender)


def connect_change_signals():
    for model in [Tag, *POST_MODELS.values()]:
        post_save.connect(announce_change, sender=model, dispatch_uid=f"changed-save-{model.__name__}")
        post_delete.connect(announce_change, sender=model, dispatch_uid=f"changed-delete-{model.__name__}")
    for model in POST_MODELS.values():
        m2m_changed.connect(announce_change, sender=model.tags.through, dispatch_uid=f"changed-tags-{model.__name__}")


connect_change_signals()



def published(model):
    """Posts of one kind that readers may see."""
    return model.objects.filter(is_draft=False)


def count_published(model):
    """A subquery: how many published posts of `model` carry the outer query's tag."""
    through = model.tags.through.objects.filter(tag=OuterRef("pk"), **{f"{model.kind}__is_draft": False})
    return Coalesce(Subquery(through.values("tag").annotate(n=Count("*")).values("n")), 0)


def tags_with_counts():
    """Every tag, annotated with `post_count`: its published posts of every kind."""
    return Tag.objects.annotate(
        post_count=count_published(Entry) + count_published(Blogmark) + count_published(Quotation)
    )


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


class PostAdmin(admin.ModelAdmin):
    date_hierarchy = "created"
    list_filter = ["is_draft", "created", "tags"]
    autocomplete_fields = ["tags"]
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="Tags")
    def tag_list(self, post):
        return ", ".join(tag.tag for tag in post.tags.all())


@admin.register(Entry)
class EntryAdmin(PostAdmin):
    list_display = ["title", "created", "tag_list", "is_draft", "word_count"]
    search_fields = ["title", "body", "tags__tag"]
    prepopulated_fields = {"slug": ["title"]}
    fields = ["title", "slug", "body", "tags", "created", "is_draft"]


@admin.register(Blogmark)
class BlogmarkAdmin(PostAdmin):
    list_display = ["link_title", "link_url", "created", "tag_list", "is_draft"]
    search_fields = ["link_title", "link_url", "commentary", "via_title", "tags__tag"]
    prepopulated_fields = {"slug": ["link_title"]}
    fields = ["link_url", "link_title", "slug", "commentary", "via_url", "via_title", "tags", "created", "is_draft"]


@admin.register(Quotation)
class QuotationAdmin(PostAdmin):
    list_display = ["source", "quotation", "created", "tag_list", "is_draft"]
    search_fields = ["quotation", "source", "tags__tag"]
    prepopulated_fields = {"slug": ["source"]}
    fields = ["quotation", "source", "source_url", "slug", "tags", "created", "is_draft"]


# --- Pages: the home page, tag pages, permalinks --------------------------------------------


def mixed_posts(querysets):
    """One newest-first query over several kinds: rows of (kind, pk, created), ready to paginate."""
    rows = [
        queryset.order_by().annotate(kind=Value(kind, output_field=models.CharField())).values("kind", "pk", "created")
        for kind, queryset in querysets.items()
    ]
    # kind last: the same pk at the same moment in two kinds must still have one fixed order, or
    # LIMIT/OFFSET pages could repeat one post and skip another.
    return rows[0].union(*rows[1:], all=True).order_by("-created", "-pk", "kind")


def load_posts(rows):
    """The posts behind a page of mixed rows, in the rows' order: one query per kind, tags prefetched."""
    ids_by_kind = defaultdict(list)
    for row in rows:
        ids_by_kind[row["kind"]].append(row["pk"])
    loaded = {}
    for kind, ids in ids_by_kind.items():
        for post in POST_MODELS[kind].objects.filter(pk__in=ids).prefetch_related("tags"):
            loaded[kind, post.pk] = post
    return [loaded[row["kind"], row["pk"]] for row in rows]


def count_mixed_posts(querysets):
    """How many rows mixed_posts(querysets) has, in one query over the posts' ids alone: each kind's
    ids can come from an index, where counting the (kind, pk, created) rows reads every table row
    (7 ms against 45 ms for the home page at 100k posts on SQLite)."""
    ids = [queryset.order_by().values("pk") for queryset in querysets.values()]
    return ids[0].union(*ids[1:], all=True).count()


class MixedPostsPaginator(Paginator):
    """Pages of mixed_posts(querysets), counted with count_mixed_posts()."""

    def __init__(self, querysets, per_page):
        super().__init__(mixed_posts(querysets), per_page)
        self.querysets = querysets

    @cached_property
    def count(self):
        return count_mixed_posts(self.querysets)


def paginate(request, queryset):
    """The requested page of a queryset; a missing, malformed or out-of-range page is a 404."""
    return requested_page(request, Paginator(queryset, settings.LINKBLOG_PAGE_SIZE))


def requested_page(request, paginator):
    """The page `?page=` asks for; a missing, malformed or out-of-range page is a 404."""
    try:
        return paginator.page(request.GET.get("page", 1))
    except (PageNotAnInteger, EmptyPage):
        raise Http404("No such page")


def posts_page(request, querysets):
    """A page of mixed posts, with the post objects loaded in order."""
    page = requested_page(request, MixedPostsPaginator(querysets, settings.LINKBLOG_PAGE_SIZE))
    page.object_list = load_posts(page.object_list)
    return page


@app.route("/", name="home")
def home(request):
    page = posts_page(request, {kind: published(model) for kind, model in POST_MODELS.items()})
    return render(request, "home.html", {"page": page})


@app.route("/tags/", name="tag_list")
def tag_list(request):
    """Every tag with published posts, drawn as a cloud: the more posts, the bigger."""
    tags = list(tags_with_counts().filter(post_count__gt=0).order_by("tag"))
    most = max((tag.post_count for tag in tags), default=0)
    for tag in tags:
        tag.size = cloud_size(tag.post_count, most)
    return render(request, "tags.html", {"tags": tags})


MAX_COMBINED_TAGS = 3


class TagsConverter:
    """One tag (`django`) or several joined with `+` (`django+python`) in a URL, as a list of names."""

    regex = r"[-a-zA-Z0-9_]+(?:\+[-a-zA-Z0-9_]+)*"

    def to_python(self, value):
        return value.split("+")

    def to_url(self, value):
        return value if isinstance(value, str) else "+".join(value)


register_converter(TagsConverter, "tags")


class TooManyTags(Exception):
    """A URL combines more tags than a page may: answered with a 400 page."""


def tags_named(names):
    """The tags named in a URL, in its order and without repeats: 404 if one is unknown."""
    if len(names) > MAX_COMBINED_TAGS:
        raise TooManyTags(f"A page can combine at most {MAX_COMBINED_TAGS} tags; this address names {len(names)}.")
    names = list(dict.fromkeys(names))
    found = {tag.tag: tag for tag in Tag.objects.filter(tag__in=names)}
    if len(found) < len(names):
        raise Http404("No such tag")
    return [found[name] for name in names]


def tagged_posts(tags):
    """Published posts of every kind that carry all of `tags`, as querysets by kind."""
    querysets = {}
    for kind, model in POST_MODELS.items():
        posts = published(model)
        for tag in tags:
            posts = posts.filter(tags=tag)
        querysets[kind] = posts
    return querysets


def too_many_tags_is_400(view):
    """Answer TooManyTags with a 400 page that says what went wrong."""

    @wraps(view)
    def view_with_tag_limit(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except TooManyTags as error:
            return render(request, "400.html", {"message": str(error)}, status=400)

    return view_with_tag_limit


def redirect_renamed_tags(request, names):
    """A 301 to the current page when the URL names a tag by an old name (renamed or merged
    through the API); a 404 when a name is neither a tag nor an old name."""
    new_names = dict(TagRedirect.objects.filter(old_tag__in=names).values_list("old_tag", "tag__tag"))
    if not new_names:
        raise Http404("No such tag")
    current = list(dict.fromkeys(new_names.get(name, name) for name in names))
    query = request.GET.urlencode()
    return redirect(reverse("tag_page", args=[current]) + (f"?{query}" if query else ""), permanent=True)


@app.route("/tags/<tags:names>/", name="tag_page")
@too_many_tags_is_400
def tag_page(request, names):
    """One tag's page, or the posts carrying all of two or three tags (`/tags/a+b/`)."""
    try:
        tags = tags_named(names)
    except Http404:
        return redirect_renamed_tags(request, names)
    names = [tag.tag for tag in tags]
    posts = tagged_posts(tags)
    page = posts_page(request, posts)
    context = {
        "tags": tags,
        "names": names,
        "page": page,
        "canonical": canonical_tag_page(names, page),
        "related": related_tags(tags, posts),
    }
    return render(request, "tag.html", context)


def utc_datetime(year, month=1, day=1):
    """Midnight UTC on a date named in a URL, or 404 if there is no such date (Feb 30, year 0 or 99999)."""
    try:
        return datetime(year, month, day, tzinfo=dt_timezone.utc)
    except (ValueError, OverflowError):
        raise Http404("No such date")


def month_number(month):
    """1 for "Jan" ... 12 for "Dec"; 404 for anything else."""
    if month not in MONTHS:
        raise Http404("No such month")
    return MONTHS.index(month) + 1


def day_range(year, month, day):
    """The UTC start and end of a day named in a URL, or 404 if there is no such day."""
    start = utc_datetime(year, month_number(month), day)
    try:
        return start, start + timedelta(days=1)
    except OverflowError:
        raise Http404("No such day")


def find_post(request, start, end, slug):
    """The post with this slug on this day: entries first, then blogmarks, then quotations."""
    for model in POST_MODELS.values():
        posts = model.objects.filter(created__gte=start, created__lt=end, slug=slug)
        if not request.user.is_staff:
            posts = posts.filter(is_draft=False)
        post = posts.prefetch_related("tags").first()
        if post:
            return post
    raise Http404("No such post")


@app.route("/<int:year>/<str:month>/<int:day>/<slug:slug>/", name="permalink")
def permalink(request, year, month, day, slug):
    start, end = day_range(year, month, day)
    post = find_post(request, start, end, slug)
    return render(request, "post.html", {"post": post})


# --- Feeds: Atom for everything, for each kind and for each tag or combination of tags --------

from django.contrib.syndication.views import Feed  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.utils.feedgenerator import Atom1Feed  # noqa: E402

FEED_LENGTH = 30


@app.templatetag.filter(name="absolute")
def absolute_url(path):
    """A site path as a full URL on LINKBLOG_BASE_URL: for feeds, the sitemap and cards."""
    return settings.LINKBLOG_BASE_URL + path


class AtomWithContent(Atom1Feed):
    """Atom whose entries carry the whole post as <content> (Django's Atom1Feed writes only a
    <summary>), with xml:base so that relative links inside posts resolve on the site."""

    def root_attributes(self):
        return {**super().root_attributes(), "xml:base": absolute_url("/")}

    def add_item_elements(self, handler, item):
        super().add_item_elements(handler, item)
        handler.addQuickElement("content", item["content"], {"type": "html"})


class PostsFeed(Feed):
    """The 30 newest published posts of a feed's querysets; subclasses say which posts."""

    feed_type = AtomWithContent

    def querysets(self, obj):
        raise NotImplementedError

    def items(self, obj):
        return load_posts(mixed_posts(self.querysets(obj))[:FEED_LENGTH])

    def feed_guid(self, obj):
        return self.feed_url(obj)

    def author_name(self):
        return settings.LINKBLOG_AUTHOR

    def item_title(self, post):
        # Atom titles are plain text: Django's default would escape them a second time.
        return f"Quoting {post.source}" if post.kind == "quotation" else str(post)

    def item_description(self, post):
        return None  # the whole post goes into <content>, see item_extra_kwargs

    def item_link(self, post):
        return absolute_url(post.get_absolute_url())

    def item_guid(self, post):
        """A tag: URI from the site's host and the permalink: the same on every request, and
        unchanged by edits to the title or text, or by moving the site from http to https."""
        host = urlsplit(settings.LINKBLOG_BASE_URL).hostname
        return f"tag:{host},{post.created:%Y-%m-%d}:{post.get_absolute_url()}"

    item_guid_is_permalink = False

    def item_pubdate(self, post):
        return post.created

    def item_updateddate(self, post):
        return post.created

    def item_categories(self, post):
        return [tag.tag for tag in post.tags.all()]

    def item_extra_kwargs(self, post):
        return {"content": render_to_string(f"feeds/_{post.kind}.html", {"post": post})}


# The site-wide feeds, /atom/<name>/: the kinds of post each one holds.
KIND_FEEDS = {
    "everything": tuple(POST_MODELS),
    "entries": ("entry",),
    "links": ("blogmark",),
    "quotations": ("quotation",),
}


class KindFeed(PostsFeed):
    """Everything, or the posts of one kind."""

    def get_object(self, request, name):
        if name not in KIND_FEEDS:
            raise Http404("No such feed")
        return name

    def querysets(self, name):
        return {kind: published(POST_MODELS[kind]) for kind in KIND_FEEDS[name]}

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

    def querysets(self, tags):
        return tagged_posts(tags)

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
@too_many_tags_is_400
def tag_feed(request, names):
    return TagFeed()(request, names)


# --- Archives: a year's months, a month's and a day's posts, with links to their neighbours --

from django.db.models.functions import ExtractMonth, ExtractYear  # noqa: E402


def year_range(year):
    """The UTC start and end of a year named in a URL, or 404."""
    return utc_datetime(year), utc_datetime(year + 1)


def month_range(year, month):
    """The UTC start and end of a month named in a URL ("Jan"...), or 404."""
    number = month_number(month)
    return utc_datetime(year, number), utc_datetime(year + number // 12, number % 12 + 1)


def published_posts(**filters):
    """Published posts of every kind matching `filters`, as querysets by kind (for mixed_posts)."""
    return {kind: published(model).filter(**filters) for kind, model in POST_MODELS.items()}


def summed_counts(querysets):
    """Add up per-kind (key..., count) rows into one Counter, in one UNION query."""
    first, *rest = querysets
    totals = Counter()
    for *key, count in first.union(*rest, all=True):
        totals[tuple(key)] += count
    return totals


def monthly_counts(**filters):
    """Published posts per (year, month) as a sorted list of (year, month, count)."""
    per_kind = [
        posts.order_by()
        .annotate(year=ExtractYear("created"), month=ExtractMonth("created"))
        .values_list("year", "month")
        .annotate(count=Count("pk"))
        for posts in published_posts(**filters).values()
    ]
    return sorted((year, month, count) for (year, month), count in summed_counts(per_kind).items())


def months_by_year(counts):
    """(year, month, count) rows grouped as [{"year", "count", "months": [{"name", "date", "count"}]}]."""
    years = {}
    for year, month, count in counts:
        entry = years.setdefault(year, {"year": year, "count": 0, "months": []})
        entry["count"] += count
        entry["months"].append({"name": MONTHS[month - 1], "date": datetime(year, month, 1), "count": count})
    return list(years.values())


ARCHIVE_PAGES = ("archive_year", "archive_month", "archive_day")


def archive_link(moment, depth):
    """The archive page of the year (depth 1), month (2) or day (3) that `moment` falls in."""
    moment = moment.astimezone(dt_timezone.utc)
    args = [moment.year, MONTHS[moment.month - 1], moment.day][:depth]
    return {"date": moment, "url": reverse(ARCHIVE_PAGES[depth - 1], args=args)}


def neighbours(start, end, depth):
    """Links to the archive pages of the nearest published posts before `start` and from `end` on."""
    earlier = mixed_posts(published_posts(created__lt=start)).first()
    later = mixed_posts(published_posts(created__gte=end)).order_by("created", "pk").first()
    return [row and archive_link(row["created"], depth) for row in (earlier, later)]


def archive_page(request, template, start, end, depth):
    """A month's or a day's posts, newest first and paginated: 404 if there are none."""
    page = posts_page(request, published_posts(created__gte=start, created__lt=end))
    if not page.paginator.count:
        raise Http404("Nothing was published then")
    earlier, later = neighbours(start, end, depth)
    context = {"page": page, "start": start, "month": MONTHS[start.month - 1], "earlier": earlier, "later": later}
    return render(request, template, context)


@app.route("/archive/", name="archive_index")
def archive_index(request):
    return render(request, "archive_index.html", {"years": months_by_year(monthly_counts())})


@app.route("/<int:year>/", name="archive_year")
def archive_year(request, year):
    start, end = year_range(year)
    years = months_by_year(monthly_counts(created__gte=start, created__lt=end))
    if not years:
        raise Http404("Nothing was published that year")
    earlier, later = neighbours(start, end, depth=1)
    return render(request, "archive_year.html", {"year": years[0], "earlier": earlier, "later": later})


@app.route("/<int:year>/<str:month>/", name="archive_month")
def archive_month(request, year, month):
    start, end = month_range(year, month)
    return archive_page(request, "archive_month.html", start, end, depth=2)


@app.route("/<int:year>/<str:month>/<int:day>/", name="archive_day")
def archive_day(request, year, month, day):
    start, end = day_range(year, month, day)
    return archive_page(request, "archive_day.html", start, end, depth=3)


# --- Search query language: words, "phrases", -negation and key:value filters ---------------

MAX_QUERY_LENGTH = 500  # longer queries are cut here: nobody types more, and it bounds the SQL
MAX_QUERY_TERMS = 20
FILTER_KEYS = {"tag", "type", "year", "from", "to"}
SEARCH_TYPES = {
    "entry": "entry", "entries": "entry",
    "blogmark": "blogmark", "blogmarks": "blogmark", "link": "blogmark", "links": "blogmark",
    "quotation": "quotation", "quotations": "quotation", "quote": "quotation", "quotes": "quotation",
}
WORD_CHARACTER = re.compile(r"[^\W_]")  # a letter or digit: terms without one cannot match anything


@dataclass(frozen=True)
class Term:
    """One piece of a query as typed: a word, a "quoted phrase" or a key:value filter; maybe negated."""

    text: str
    key: str = ""
    negated: bool = False
    quoted: bool = False

    def __str__(self):
        text = f'"{self.text}"' if self.quoted else self.text
        return ("-" if self.negated else "") + (f"{self.key}:" if self.key else "") + text


def read_until(text, position, stop):
    """The index of the first character at or after `position` for which `stop` is true (or the end)."""
    while position < len(text) and not stop(text[position]):
        position += 1
    return position


def tokenize_query(q):
    """Split a query into Terms. Never fails: an unclosed quote runs to the end of the query."""
    q = q.replace("\x00", " ")[:MAX_QUERY_LENGTH]
    terms, position = [], 0
    while len(terms) < MAX_QUERY_TERMS:
        position = read_until(q, position, lambda character: not character.isspace())
        if position >= len(q):
            break
        negated = q[position] == "-" and position + 1 < len(q) and not q[position + 1].isspace()
        position += negated
        if q[position] == '"':
            end = read_until(q, position + 1, lambda character: character == '"')
            terms.append(Term(q[position + 1 : end], negated=negated, quoted=True))
            position = end + 1
            continue
        end = read_until(q, position, str.isspace)
        word = q[position:end]
        key, colon, value = word.partition(":")
        if colon and value and key.lower() in FILTER_KEYS:
            terms.append(Term(value, key=key.lower(), negated=negated))
        else:
            terms.append(Term(word, negated=negated))
        position = end
    return terms


@dataclass
class ParsedQuery:
    """What a search asks for: text to find and filters to apply, plus notes about what was ignored."""

    terms: list = field(default_factory=list)
    words: list = field(default_factory=list)  # Terms of text that must match
    excluded_words: list = field(default_factory=list)  # Terms of text that must not match
    tags: list = field(default_factory=list)  # every one of these tags
    excluded_tags: list = field(default_factory=list)
    kinds: list = field(default_factory=list)  # any of these kinds
    excluded_kinds: list = field(default_factory=list)
    years: list = field(default_factory=list)  # any of these years
    excluded_years: list = field(default_factory=list)
    date_from: date | None = None
    date_to: date | None = None
    notes: list = field(default_factory=list)

    def __str__(self):
        return " ".join(str(term) for term in self.terms)

    @property
    def is_empty(self):
        return not self.terms

    @property
    def highlight_words(self):
        """The letters-and-digits words to mark in results."""
        words = []
        for term in self.words:
            words.extend(re.findall(r"[^\W_]+", term.text))
        return words

    @property
    def filters(self):
        return [term for term in self.terms if term.key]

    def with_filter(self, key, value):
        """This query's text with one more key:value filter (or unchanged if it is already there)."""
        term = Term(str(value), key=key)
        return str(self) if term in self.terms else f"{self} {term}".strip()

    def without(self, term):
        """This query's text with one term taken out."""
        return " ".join(str(other) for other in self.terms if other != term)

    @property
    def filter_removals(self):
        """(filter, the query without it) for each filter, for "remove" links."""
        return [(term, self.without(term)) for term in self.filters]


def parse_date_filter(term):
    try:
        return date.fromisoformat(term.text)
    except ValueError:
        return None


def apply_filter(parsed, term):
    """Add one key:value term to `parsed`; a value that makes no sense becomes a note and is ignored."""
    value = term.text.lower()
    if term.key == "tag":
        (parsed.excluded_tags if term.negated else parsed.tags).append(value)
    elif term.key == "type" and value in SEARCH_TYPES:
        (parsed.excluded_kinds if term.negated else parsed.kinds).append(SEARCH_TYPES[value])
    elif term.key == "type":
        parsed.notes.append(f"Ignored {term}: the types are entry, blogmark and quotation.")
    elif term.key == "year" and value.isascii() and value.isdigit() and len(value) == 4 and value != "0000":
        (parsed.excluded_years if term.negated else parsed.years).append(int(value))
    elif term.key == "year":
        parsed.notes.append(f"Ignored {term}: a year has four digits, like year:2024.")
    elif term.negated:
        parsed.notes.append(f"Ignored {term}: {term.key}: cannot be negated.")
    elif parse_date_filter(term) is None:
        parsed.notes.append(f"Ignored {term}: a date looks like {term.key}:2024-01-31.")
    elif term.key == "from":
        parsed.date_from = parse_date_filter(term)
    else:
        parsed.date_to = parse_date_filter(term)


def parse_query(q):
    """Parse the search box: `tag:django type:blogmark year:2024 -tag:python "exact phrase" from:2023-01-01`."""
    parsed = ParsedQuery()
    for term in tokenize_query(q or ""):
        if term.key:
            apply_filter(parsed, term)
        elif WORD_CHARACTER.search(term.text):
            (parsed.excluded_words if term.negated else parsed.words).append(term)
        else:
            continue  # only punctuation: nothing to search for, and left out of the query kept in the box
        parsed.terms.append(term)
    return parsed


# --- Search: ranked full-text search over every kind (SQLite FTS5 or PostgreSQL) ---------------

# What each kind offers to search, by weight: title (A), body (B), source (C); tag names are C too.
SEARCH_FIELDS = {
    "entry": ("title", "body", ""),
    "blogmark": ("link_title", "commentary", "via_title"),
    "quotation": ("", "quotation", "source"),
}
SEARCH_WEIGHTS = (10.0, 4.0, 2.0, 2.0)  # SQLite bm25 column weights: title, body, source, tags
POSTGRES_SEARCH_CONFIG = "english"  # stems like SQLite's porter tokenizer


def search_index_table(kind):
    return f"{app.app_name}_{kind}_search"


def any_of_years(years):
    """A condition for posts of any of these (UTC) years, as date ranges the `created` index serves."""
    condition = Q(pk__in=[])
    for year in years:
        condition |= Q(created__year=year)
    return condition


def start_of_day(day):
    return datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc)


def apply_search_filters(querysets, parsed):
    """Apply the query's filters (kind, tags, years, dates) to each kind's queryset."""
    filtered = {}
    for kind, queryset in querysets.items():
        if (parsed.kinds and kind not in parsed.kinds) or kind in parsed.excluded_kinds:
            continue
        if parsed.tags:
            queryset = queryset.filter(pk__in=posts_with_every_tag(queryset.model, parsed.tags))
        if parsed.excluded_tags:
            queryset = queryset.exclude(tags__tag__in=parsed.excluded_tags)
        if parsed.years:
            queryset = queryset.filter(any_of_years(parsed.years))
        if parsed.excluded_years:
            queryset = queryset.exclude(any_of_years(parsed.excluded_years))
        if parsed.date_from:
            queryset = queryset.filter(created__gte=start_of_day(parsed.date_from))
        if parsed.date_to and parsed.date_to < date.max:  # nothing is later than the last day there is
            queryset = queryset.filter(created__lt=start_of_day(parsed.date_to) + timedelta(days=1))
        filtered[kind] = queryset
    return filtered


def fts5_phrase(term):
    """A term as an FTS5 string: the tokenizer splits it, so operators and punctuation are plain text."""
    return '"' + term.text.replace('"', '""') + '"'


def fts5_query(terms, operator):
    return f" {operator} ".join(fts5_phrase(term) for term in terms)


def sqlite_match(kind, queryset, parsed):
    """Posts whose index row has every word and no excluded word: a subquery, fit for any query."""
    index = search_index_table(kind)
    matches = f"SELECT rowid FROM {index} WHERE {index} MATCH %s"
    if parsed.words:
        queryset = queryset.filter(pk__in=RawSQL(matches, [fts5_query(parsed.words, "AND")]))
    if parsed.excluded_words:
        queryset = queryset.exclude(pk__in=RawSQL(matches, [fts5_query(parsed.excluded_words, "OR")]))
    return queryset


def sqlite_ranked(kind, queryset, parsed):
    """Posts joined to their matching index rows, ranked by bm25 (negated: higher is better, as on PostgreSQL).

    The join lets FTS5 find the matches and rank them in one pass; Django's extra() is the ORM's way to
    join a table that has no model. The unary + in the join keeps SQLite from looking the index up once
    per post (seconds at 100,000 posts): it must run the MATCH once and look the posts up by id.
    """
    index = search_index_table(kind)
    match = fts5_query(parsed.words, "AND")
    if parsed.excluded_words:
        match = f"({match}) NOT ({fts5_query(parsed.excluded_words, 'OR')})"
    weights = ", ".join(str(weight) for weight in SEARCH_WEIGHTS)
    return queryset.extra(
        select={"rank": f"-bm25({index}, {weights})"},
        tables=[index],
        where=[f"{queryset.model._meta.db_table}.id = +{index}.rowid", f"{index} MATCH %s"],
        params=[match],
    )


def postgres_query(parsed):
    """A SearchQuery for every word and phrase, none of the excluded ones: each term parsed by PostgreSQL."""
    from django.contrib.postgres.search import SearchQuery

    query = None
    for term in parsed.words + parsed.excluded_words:
        part = SearchQuery(term.text, search_type="phrase" if term.quoted else "plain", config=POSTGRES_SEARCH_CONFIG)
        part = ~part if term.negated else part
        query = part if query is None else query & part
    return query


def as_sql(expression, queryset):
    """An ORM expression compiled to (sql, params) for the queryset's database."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    return expression.resolve_expression(queryset.query).as_sql(compiler, compiler.connection)


def postgres_match(kind, queryset, parsed):
    """Posts whose search document matches: a GIN index scan of the kind's search table."""
    if not (parsed.words or parsed.excluded_words):
        return queryset
    query, params = as_sql(postgres_query(parsed), queryset)
    matches = f"SELECT post_id FROM {search_index_table(kind)} WHERE document @@ {query}"
    return queryset.filter(pk__in=RawSQL(matches, params))


def postgres_ranked(kind, queryset, parsed):
    """Matching posts ranked by SearchRank of their weighted document (looked up for the matches only)."""
    from django.contrib.postgres.search import SearchRank, SearchVectorField

    document = RawSQL(
        f"SELECT document FROM {search_index_table(kind)} WHERE post_id = {queryset.model._meta.db_table}.id",
        [],
        output_field=SearchVectorField(),
    )
    return postgres_match(kind, queryset, parsed).annotate(rank=SearchRank(document, postgres_query(parsed)))


def matching_posts(filtered, parsed):
    """Each kind's posts (already filtered) that match the text: {kind: queryset}."""
    match = sqlite_match if connection.vendor == "sqlite" else postgres_match
    return {kind: match(kind, queryset, parsed) for kind, queryset in filtered.items()}


def ranked_rows(filtered, parsed):
    """One query of (kind, pk, created, rank) rows of the matching posts, best first (newest first without words)."""
    rows = []
    for kind, queryset in filtered.items():
        if not parsed.words:
            queryset = matching_posts({kind: queryset}, parsed)[kind].annotate(rank=Value(0.0, output_field=models.FloatField()))
        elif connection.vendor == "sqlite":
            queryset = sqlite_ranked(kind, queryset, parsed)
        else:
            queryset = postgres_ranked(kind, queryset, parsed)
        queryset = queryset.order_by().annotate(kind=Value(kind, output_field=models.CharField()))
        rows.append(queryset.values("kind", "pk", "created", "rank"))
    if not rows:
        return Entry.objects.none().values("pk")
    return rows[0].union(*rows[1:], all=True).order_by("-rank", "-created", "-pk")


def count_matching(matching):
    """How many posts match, in one query that finds the matches but does not rank them."""
    pks = [queryset.order_by().values("pk") for queryset in matching.values()]
    return pks[0].union(*pks[1:], all=True).count() if pks else 0


class SearchResults:
    """The ranked rows of a search, as `paginate` and slicing want them; counting them skips the
    ranking (which the queryset's own count() would repeat), or uses a count already known."""

    def __init__(self, rows, matching, count=None):
        self.rows, self.matching, self.known_count = rows, matching, count

    def count(self):
        if self.known_count is None:
            self.known_count = count_matching(self.matching)
        return self.known_count

    def __getitem__(self, key):
        return self.rows[key]

    def __iter__(self):
        return iter(self.rows)


def search_posts(q, querysets=None):
    """Search published posts (or the given {kind: queryset}) with the query language.

    Returns (results, parsed): results of (kind, pk, created, rank) rows, best first, to hand to
    `paginate` (or to count() and slice) and then `load_posts`; parsed for showing the query.
    """
    if querysets is None:
        querysets = {kind: published(model) for kind, model in POST_MODELS.items()}
    parsed = parse_query(q)
    filtered = apply_search_filters(querysets, parsed)
    return SearchResults(ranked_rows(filtered, parsed), matching_posts(filtered, parsed)), parsed


# --- Search index: kept in sync by database triggers, whoever writes ---------------------------
#
# One index table per kind (linkblog_entry_search, ...), one row per post, filled and kept in step by
# triggers on the post tables, their tag tables and the tag table: the admin, the API, imports with
# bulk_create or raw SQL alike. On SQLite it is an FTS5 table (rowid = post id; columns title, body,
# source, tags; Porter stemmer). On PostgreSQL it is a table of (post_id, document tsvector) with a GIN
# index; the document weighs titles A, bodies B, sources and tag names C.
# Migration 0004 installs it and indexes the posts already there. To alter a column SQLite's schema
# editor rebuilds the table, and a rebuild fails while other tables' triggers name it; so on SQLite
# the triggers are dropped before any migration runs and put back (the index refilled) after it
# (`pause_search_index`, `resume_search_index`). PostgreSQL alters tables in place.

SEARCH_TOKENIZER = "porter unicode61 remove_diacritics 2"


def search_index_insert_sql(kind, post_ids):
    """SQL that indexes the posts whose ids `post_ids` (an SQL expression) gives: text and tag names."""
    table, index = f"{app.app_name}_{kind}", search_index_table(kind)
    columns = ", ".join(f"post.{name}" if name else "''" for name in SEARCH_FIELDS[kind])
    tag_names = (
        f"SELECT group_concat(tag.tag, ' ') FROM {table}_tags AS link"
        f" JOIN {app.app_name}_tag AS tag ON tag.id = link.tag_id WHERE link.{kind}_id = post.id"
    )
    return (
        f"INSERT INTO {index} (rowid, title, body, source, tags) "
        f"SELECT post.id, {columns}, ({tag_names}) FROM {table} AS post WHERE post.id IN ({post_ids});"
    )


def search_index_delete_sql(kind, post_ids):
    """SQL that removes the index rows of the posts whose ids `post_ids` gives."""
    return f"DELETE FROM {search_index_table(kind)} WHERE rowid IN ({post_ids});"


def search_index_row_sql(kind, post_ids):
    """SQL that rewrites the index rows of the posts whose ids `post_ids` gives."""
    return f"{search_index_delete_sql(kind, post_ids)} {search_index_insert_sql(kind, post_ids)}"


def search_index_triggers(kind):
    """{trigger name: SQL} for one kind's index."""
    table, index = f"{app.app_name}_{kind}", search_index_table(kind)
    text_columns = ", ".join(name for name in SEARCH_FIELDS[kind] if name)
    tagged = f"SELECT {kind}_id FROM {table}_tags WHERE tag_id = new.id"
    body = {
        "post_insert": f"AFTER INSERT ON {table} BEGIN {search_index_row_sql(kind, 'new.id')} END",
        "post_update": f"AFTER UPDATE OF {text_columns} ON {table} BEGIN {search_index_row_sql(kind, 'new.id')} END",
        "post_delete": f"AFTER DELETE ON {table} BEGIN DELETE FROM {index} WHERE rowid = old.id; END",
        "tags_insert": f"AFTER INSERT ON {table}_tags BEGIN {search_index_row_sql(kind, f'new.{kind}_id')} END",
        "tags_update": f"AFTER UPDATE ON {table}_tags BEGIN {search_index_row_sql(kind, f'old.{kind}_id, new.{kind}_id')} END",
        "tags_delete": f"AFTER DELETE ON {table}_tags BEGIN {search_index_row_sql(kind, f'old.{kind}_id')} END",
        "tag_rename": f"AFTER UPDATE OF tag ON {app.app_name}_tag BEGIN {search_index_row_sql(kind, tagged)} END",
    }
    return {f"{index}_{name}": f"CREATE TRIGGER {index}_{name} {sql}" for name, sql in body.items()}


def install_search_index(connection):
    """(Re)create the index tables and triggers and index every post."""
    uninstall_search_index(connection)
    with connection.cursor() as cursor:
        for kind in SEARCH_FIELDS:
            if connection.vendor == "sqlite":
                statements = sqlite_search_index_sql(kind)
            else:
                statements = postgres_search_index_sql(kind)
            for sql in statements:
                cursor.execute(sql)


def uninstall_search_index(connection):
    """Drop the index tables, their triggers and (on PostgreSQL) their functions."""
    if connection.vendor == "sqlite":
        drop_search_triggers(connection)
    with connection.cursor() as cursor:
        for kind in SEARCH_FIELDS:
            index = search_index_table(kind)
            cursor.execute(f"DROP TABLE IF EXISTS {index}")
            if connection.vendor != "sqlite":
                for name in ("refresh(bigint[])", "post_changed()", "tags_changed()", "tag_renamed()", "truncated()"):
                    cursor.execute(f"DROP FUNCTION IF EXISTS {index}_{name} CASCADE")


def sqlite_search_index_sql(kind):
    """The statements that create one kind's FTS5 table and triggers, and fill the table."""
    index = search_index_table(kind)
    return [
        f"CREATE VIRTUAL TABLE {index} USING fts5(title, body, source, tags, tokenize='{SEARCH_TOKENIZER}')",
        *search_index_triggers(kind).values(),
        search_index_insert_sql(kind, f"SELECT id FROM {app.app_name}_{kind}"),
    ]


def postgres_document_sql(kind):
    """SQL for the weighted tsvector of the post aliased `post`: its texts, then its tag names."""
    tag_names = (
        f"SELECT string_agg(tag.tag, ' ') FROM {app.app_name}_{kind}_tags AS link"
        f" JOIN {app.app_name}_tag AS tag ON tag.id = link.tag_id WHERE link.{kind}_id = post.id"
    )
    columns = [(f"post.{name}", weight) for name, weight in zip(SEARCH_FIELDS[kind], "ABC") if name]
    return " || ".join(
        f"setweight(to_tsvector('{POSTGRES_SEARCH_CONFIG}', coalesce({column}, '')), '{weight}')"
        for column, weight in [*columns, (f"({tag_names})", "C")]
    )


def postgres_search_index_sql(kind):
    """The statements that create one kind's tsvector table, its GIN index, functions and triggers, and fill it."""
    table, index = f"{app.app_name}_{kind}", search_index_table(kind)
    text_columns = ", ".join(name for name in SEARCH_FIELDS[kind] if name)
    return [
        f"CREATE TABLE {index} (post_id bigint PRIMARY KEY, document tsvector NOT NULL)",
        f"CREATE INDEX {index}_document ON {index} USING gin (document)",
        f"""CREATE FUNCTION {index}_refresh(ids bigint[]) RETURNS void LANGUAGE sql AS $$
            DELETE FROM {index} WHERE post_id = ANY(ids);
            INSERT INTO {index} (post_id, document)
            SELECT post.id, {postgres_document_sql(kind)} FROM {table} AS post WHERE post.id = ANY(ids);
        $$""",
        f"""CREATE FUNCTION {index}_post_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            IF TG_OP = 'DELETE' THEN DELETE FROM {index} WHERE post_id = OLD.id;
            ELSE PERFORM {index}_refresh(ARRAY[NEW.id]); END IF;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {index}_tags_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            IF TG_OP <> 'INSERT' THEN PERFORM {index}_refresh(ARRAY[OLD.{kind}_id]); END IF;
            IF TG_OP <> 'DELETE' THEN PERFORM {index}_refresh(ARRAY[NEW.{kind}_id]); END IF;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {index}_tag_renamed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            PERFORM {index}_refresh(ARRAY(SELECT {kind}_id FROM {table}_tags WHERE tag_id = NEW.id));
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {index}_truncated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            TRUNCATE {index};
            RETURN NULL;
        END $$""",
        f"CREATE TRIGGER {index}_post AFTER INSERT OR DELETE OR UPDATE OF {text_columns} ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {index}_post_changed()",
        f"CREATE TRIGGER {index}_tags AFTER INSERT OR DELETE OR UPDATE ON {table}_tags"
        f" FOR EACH ROW EXECUTE FUNCTION {index}_tags_changed()",
        f"CREATE TRIGGER {index}_tag_rename AFTER UPDATE OF tag ON {app.app_name}_tag"
        f" FOR EACH ROW EXECUTE FUNCTION {index}_tag_renamed()",
        f"CREATE TRIGGER {index}_truncate AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {index}_truncated()",
        f"SELECT {index}_refresh(ARRAY(SELECT id FROM {table}))",
    ]


def drop_search_triggers(connection):
    with connection.cursor() as cursor:
        for kind in SEARCH_FIELDS:
            for name in search_index_triggers(kind):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


def create_search_triggers(connection):
    with connection.cursor() as cursor:
        for kind in SEARCH_FIELDS:
            for sql in search_index_triggers(kind).values():
                cursor.execute(sql)


def reindex_posts(connection, kind, post_ids):
    """Rewrite the index rows of these posts of one kind, a few thousand ids per statement."""
    post_ids = sorted(post_ids)
    with connection.cursor() as cursor:
        for start in range(0, len(post_ids), 5000):
            ids = ", ".join(str(int(pk)) for pk in post_ids[start : start + 5000])
            cursor.execute(search_index_delete_sql(kind, ids))
            cursor.execute(search_index_insert_sql(kind, ids))


class SearchIndexBatch:
    """Bulk writes inside one SQLite transaction index each post once, at the end.

    The triggers index a post when it is inserted and again for every tag linked to it (a post with
    three tags: four times), which was half of what an import spent outside Markdown. Inside
    transaction.atomic(): the triggers are dropped, the writer reports the posts it `wrote()`, and
    `finish()` indexes them and puts the triggers back. A rollback undoes the drop as well (SQLite's
    schema changes are transactional), and other connections never see the triggers missing. On
    PostgreSQL it does nothing: dropping a trigger there would lock the table against readers.
    """

    def __init__(self, connection):
        self.connection, self.post_ids = connection, defaultdict(set)
        self.active = connection.vendor == "sqlite" and search_index_state(connection) == "complete"
        if self.active:
            drop_search_triggers(connection)

    def wrote(self, kind, post_ids):
        self.post_ids[kind].update(post_ids)

    def finish(self):
        if self.active:
            for kind, post_ids in self.post_ids.items():
                reindex_posts(self.connection, kind, post_ids)
            create_search_triggers(self.connection)


def search_index_state(connection):
    """"complete", "missing" (not installed: before migration 0004) or "partial" (triggers dropped)."""
    expected = {search_index_table(kind) for kind in SEARCH_FIELDS}
    for kind in SEARCH_FIELDS:
        expected.update(search_index_triggers(kind))
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        existing = {name for (name,) in cursor.fetchall()}
    if expected <= existing:
        return "complete"
    return "partial" if expected & existing else "missing"


def pause_search_index(plan=None, using="default", **kwargs):
    """Before migrations run: drop the triggers, which would stop SQLite from rebuilding a table."""
    connection = connections[using]
    if plan and connection.vendor == "sqlite" and search_index_state(connection) != "missing":
        drop_search_triggers(connection)


def resume_search_index(using="default", **kwargs):
    """After migrations ran: reinstall the triggers and refill the index if they were dropped."""
    connection = connections[using]
    if connection.vendor == "sqlite" and search_index_state(connection) == "partial":
        install_search_index(connection)


pre_migrate.connect(pause_search_index, dispatch_uid="pause-search-index")
post_migrate.connect(resume_search_index, dispatch_uid="resume-search-index")


# --- Search facets: how many matches of each kind, year and tag ------------------------------

KIND_LABELS = {"entry": "Entries", "blogmark": "Blogmarks", "quotation": "Quotations"}
FACET_TAGS = 15


@dataclass
class Facet:
    """One value to narrow a search by: its label, how many matches have it, and the query that
    adds it (or, when the query already has it, the query without it)."""

    label: str
    count: int
    q: str
    active: bool


def facet(parsed, key, value, label, count):
    term = Term(str(value), key=key)
    active = term in parsed.terms
    return Facet(label, count, parsed.without(term) if active else parsed.with_filter(key, value), active)


def year_created():
    """The UTC year a post was created. SQLite stores UTC text, whose first four characters are the year:
    reading them spares the Python function Django's ExtractYear calls there for every row."""
    if connection.vendor == "sqlite":
        return Cast(Substr(Cast("created", models.CharField()), 1, 4), models.IntegerField())
    return ExtractYear("created")


def kind_and_year_counts(matching):
    """{(kind, year): count} of the matching posts, in one query."""
    rows = [
        queryset.order_by()
        .annotate(kind=Value(kind, output_field=models.CharField()), year=year_created())
        .values("kind", "year")
        .annotate(n=Count("pk"))
        for kind, queryset in matching.items()
    ]
    if not rows:
        return {}
    return {(row["kind"], row["year"]): row["n"] for row in rows[0].union(*rows[1:], all=True)}


def top_tags(matching):
    """[(tag, count)] of the tags the matching posts use most, at most FACET_TAGS, in one query.

    Each kind's tag links come from the ORM; adding them up across kinds needs a GROUP BY over their
    UNION ALL, which the ORM cannot write, so that outer query is SQL around the ORM's own."""
    links = [
        POST_MODELS[kind].tags.through.objects.filter(**{f"{kind}_id__in": queryset.order_by().values("pk")}).values("tag_id")
        for kind, queryset in matching.items()
    ]
    if not links:
        return []
    sql, params = links[0].union(*links[1:], all=True).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tag.tag, top.n FROM (SELECT tag_id, COUNT(*) AS n FROM ({sql}) AS link GROUP BY tag_id"
            f" ORDER BY n DESC, tag_id LIMIT %s) AS top JOIN {Tag._meta.db_table} AS tag ON tag.id = top.tag_id"
            " ORDER BY top.n DESC, tag.tag",
            [*params, FACET_TAGS],
        )
        return cursor.fetchall()


def search_facets(matching, parsed, counts):
    """Facets for the page: {"type": [...], "year": [...], "tag": [...]}, each a list of Facets.
    `counts` is kind_and_year_counts(matching)."""
    by_kind, by_year = defaultdict(int), defaultdict(int)
    for (kind, year), count in counts.items():
        by_kind[kind] += count
        by_year[year] += count
    return {
        "type": [facet(parsed, "type", kind, KIND_LABELS[kind], by_kind[kind]) for kind in KIND_LABELS if by_kind[kind]],
        "year": [facet(parsed, "year", year, str(year), count) for year, count in sorted(by_year.items(), reverse=True)],
        "tag": [facet(parsed, "tag", tag, tag, count) for tag, count in top_tags(matching)],
    }


# --- Search page: /search/?q= with results, facets and highlighted words ----------------------


@app.route("/search/", name="search")
def search(request):
    q = request.GET.get("q", "")
    parsed = parse_query(q)
    context = {"q": q, "query": parsed, "page": None}
    if not parsed.is_empty:
        filtered = apply_search_filters({kind: published(model) for kind, model in POST_MODELS.items()}, parsed)
        matching = matching_posts(filtered, parsed)
        counts = kind_and_year_counts(matching)
        page = paginate(request, SearchResults(ranked_rows(filtered, parsed), matching, sum(counts.values())))
        page.object_list = load_posts(page.object_list)
        context.update(page=page, facets=search_facets(matching, parsed, counts), words=parsed.highlight_words)
    return render(request, "search.html", context)


def highlight_pattern(words):
    """A pattern for any of the words at the start of a word, running to the word's end (so "test" marks "tests")."""
    alternatives = "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(\b(?:{alternatives})\w*)", re.IGNORECASE)


@app.templatetag.filter(name="highlight")
def highlight(text, words):
    """Escape plain text, then wrap the searched words in <mark>: {{ post.title|highlight:query.highlight_words }}."""
    if not words:
        return conditional_escape(text)
    pieces = highlight_pattern(words).split(str(text))
    # split() with one group alternates text that did not match (even places) and matches (odd places).
    return mark_safe("".join(
        format_html("<mark>{}</mark>", piece) if index % 2 else escape(piece) for index, piece in enumerate(pieces)
    ))


@app.templatetag.filter(name="search_excerpt")
def search_excerpt(html, words, length=240):
    """Plain text of rendered HTML around the first searched word, at most `length` characters."""
    text = unescape(plain_text(html))
    found = highlight_pattern(words).search(text) if words else None
    start = max(0, found.start() - length // 3) if found else 0
    if start:
        start = text.find(" ", start) + 1 or start
    excerpt = text[start : start + length]
    return ("… " if start else "") + excerpt + (" …" if start + length < len(text) else "")


# --- Discovery: related tags, the tag cloud, random posts, sitemap, robots.txt, cards ---------

from django.contrib.sitemaps import Sitemap  # noqa: E402
from django.contrib.sitemaps.views import sitemap as sitemap_view  # noqa: E402
from django.views.decorators.cache import never_cache  # noqa: E402

RELATED_TAGS = 10
CLOUD_SIZES = 5
DESCRIPTION_LENGTH = 200


def related_tags(tags, posts):
    """The tags most often found on `posts` (querysets by kind) besides `tags` themselves, most
    shared first, as [{"tag", "count", "combined"}] where `combined` names the tag page that adds
    this tag to `tags` (None past MAX_COMBINED_TAGS). One query however many posts there are."""
    per_kind = [
        POST_MODELS[kind].tags.through.objects.filter(**{f"{kind}__in": queryset.values("pk")})
        .exclude(tag__in=tags)
        .values_list("tag__tag")
        .annotate(count=Count("*"))
        for kind, queryset in posts.items()
    ]
    counts = summed_counts(per_kind)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:RELATED_TAGS]
    can_combine = len(tags) < MAX_COMBINED_TAGS
    names = [tag.tag for tag in tags]
    return [
        {"tag": name, "count": count, "combined": names + [name] if can_combine else None}
        for (name,), count in ranked
    ]


def canonical_tag_page(names, page):
    """The one address search engines should know a tag page by: tags in alphabetical order."""
    url = reverse("tag_page", args=[sorted(names)])
    return f"{url}?page={page.number}" if page.number > 1 else url


def cloud_size(count, most):
    """1 (smallest) to CLOUD_SIZES: how big a tag with `count` posts is drawn, on a log scale."""
    if most <= 1:
        return 1
    return 1 + round((CLOUD_SIZES - 1) * math.log(count) / math.log(most))


@app.templatetag.filter(name="description")
def description(html):
    """Plain text of stored HTML for meta descriptions: no markup, no entities, trimmed on a word."""
    text = unescape(plain_text(html))
    if len(text) <= DESCRIPTION_LENGTH:
        return text
    return text[: DESCRIPTION_LENGTH - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


@app.route("/random/<tags:names>/", name="random_post")
@never_cache
@too_many_tags_is_400
def random_post(request, names):
    """A 302 to a random published post with this tag (or all of these tags)."""
    rows = mixed_posts(tagged_posts(tags_named(names)))
    count = rows.count()
    if not count:
        raise Http404("No published post has this tag")
    row = rows[random.randrange(count)]
    return redirect(POST_MODELS[row["kind"]].objects.get(pk=row["pk"]))


class SiteSitemap(Sitemap):
    """Sitemap URLs on LINKBLOG_BASE_URL, whatever host the request came in on."""

    def get_protocol(self, protocol=None):
        return urlsplit(settings.LINKBLOG_BASE_URL).scheme

    def get_domain(self, site=None):
        base = urlsplit(settings.LINKBLOG_BASE_URL)
        return base.netloc + base.path  # a base URL may include a path: https://example.com/blog


class PostSitemap(SiteSitemap):
    def items(self):
        return [post for model in POST_MODELS.values() for post in published(model).only("created", "slug")]

    def lastmod(self, post):
        return post.created


class TagSitemap(SiteSitemap):
    def items(self):
        return tags_with_counts().filter(post_count__gt=0).order_by("tag")


class PageSitemap(SiteSitemap):
    """The home page, the tag cloud and the date archives: (url name, args) pairs."""

    def items(self):
        pages = [("home", []), ("tag_list", []), ("archive_index", [])]
        for year in months_by_year(monthly_counts()):
            pages.append(("archive_year", [year["year"]]))
            pages.extend(("archive_month", [year["year"], month["name"]]) for month in year["months"])
        return pages

    def location(self, page):
        name, args = page
        return reverse(name, args=args)


SITEMAPS = {"pages": PageSitemap, "tags": TagSitemap, "posts": PostSitemap}


@app.route("/sitemap.xml", name="sitemap")
def sitemap(request):
    return sitemap_view(request, SITEMAPS)


@app.route("/robots.txt", name="robots_txt")
def robots_txt(request):
    return render(request, "robots.txt", content_type="text/plain; charset=utf-8")
# --- API: a JSON API under /api/ (django-ninja): read, write, tags, tokens ----------------------
#
# Reads of published posts are public; writes need `Authorization: Bearer <token>` (tokens made by
# `python linkblog.py token USERNAME`) or a logged-in staff session, and the Django permission for
# the change. Every mistake gets a 4xx with a JSON body {"detail": ..., "errors": [{field, message}]}.

import hashlib  # noqa: E402
import secrets  # noqa: E402
from typing import Annotated, Literal, Optional, Union  # noqa: E402

from django.db import transaction  # noqa: E402
from ninja import Field, NinjaAPI, Query, Schema, Status, Swagger  # noqa: E402
from ninja import Path as PathParam  # noqa: E402  (not pathlib.Path, which the file also uses)
from ninja.errors import AuthenticationError, HttpError  # noqa: E402
from ninja.errors import ValidationError as NinjaValidationError  # noqa: E402
from ninja.security import HttpBearer, SessionAuthIsStaff  # noqa: E402
from pydantic import AfterValidator, BeforeValidator, StrictBool, StringConstraints, create_model, model_validator  # noqa: E402

API_PAGE_SIZE = 30
API_MAX_PAGE_SIZE = 200
TAG_PATTERN = r"^[-a-zA-Z0-9_]+$"
NO_NUL_PATTERN = r"^[^\x00]*$"  # PostgreSQL cannot store NUL characters in text


class ApiToken(models.Model):
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
        """Record use, writing at most once a minute per token."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now


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


# Authentication: a bearer token, a staff session, or (for reads) nobody at all.


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`: a missing header lets the next method try; a bad token is a 401."""

    def authenticate(self, request, token):
        found = ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(token), is_active=True).first()
        if found is None or not found.user.is_active:
            raise AuthenticationError(message="Invalid or revoked API token.")
        found.mark_used()
        return found.user


class Anonymous:
    """Lets a request through unauthenticated: public reads. Shown in the schema as optional auth."""

    openapi_security_schema = None

    def __call__(self, request):
        return "anonymous"


class StaffSession(SessionAuthIsStaff):
    """A logged-in staff browser session, with Django's CSRF check as for any form. Without one,
    the caller hears "401: send a token" rather than a CSRF failure."""

    def __call__(self, request):
        if not (request.user.is_authenticated and request.user.is_staff):
            return None
        return super().__call__(request)


WRITERS = [BearerToken(), StaffSession()]
READERS = [*WRITERS, Anonymous()]


def caller(request):
    """The authenticated user behind a request, or None for an anonymous reader."""
    return request.auth if request.auth != "anonymous" else None


def require_permission(request, action, model):
    """403 unless the caller holds Django's `linkblog.<action>_<model>` permission."""
    permission = f"{model._meta.app_label}.{action}_{model._meta.model_name}"
    if not caller(request).has_perm(permission):
        raise ApiProblem(403, f"Your account lacks the “{permission}” permission.")


def may_see_drafts(request, model):
    user = caller(request)
    return user is not None and user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


class LinkblogAPI(NinjaAPI):
    """NinjaAPI whose schema marks public reads as "auth optional" (an empty security requirement)."""

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema["paths"].values():
            for operation in operations.values():
                security = operation.get("security", [])
                if {"Anonymous": []} in security:
                    security[security.index({"Anonymous": []})] = {}
        schema["components"].get("securitySchemes", {}).pop("Anonymous", None)
        return schema

    def get_openapi_operation_id(self, operation):
        return operation.view_func.__name__  # plain names: list_items, rename_tag, ...


api = LinkblogAPI(
    title="linkblog API",
    version="1.0",
    description="Read and write the blog's entries, blogmarks, quotations and tags.",
    urls_namespace="api",
    auth=WRITERS,
    docs=Swagger(settings={"validatorUrl": None}),  # no call to an online validator: works offline
)


# Errors: one JSON shape for every 4xx.


class FieldProblem(Schema):
    field: str
    message: str


class Problem(Schema):
    detail: str
    errors: list[FieldProblem] = []


class ApiProblem(HttpError):
    """An error answer with a status, a message and optionally the fields at fault."""

    def __init__(self, status_code, detail, errors=()):
        super().__init__(status_code, detail)
        self.errors = list(errors)


def errors_of(validation_error):
    """Django's ValidationError as a list of {field, message}."""
    return [
        {"field": field, "message": message}
        for field, messages in validation_error.message_dict.items()
        for message in messages
    ]


def field_name(location):
    """Where pydantic found a problem, as a dotted field name: ("body", "payload", "tags", 0) → "tags.0"."""
    parts = [str(part) for part in location[1:]]
    if parts and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts) or str(location[0])


@api.exception_handler(NinjaValidationError)
def invalid_input(request, error):
    errors = [{"field": field_name(item.get("loc", ())), "message": item.get("msg", "Invalid value")} for item in error.errors]
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in errors) or "Invalid input."
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


@api.exception_handler(HttpError)
def http_error(request, error):
    detail = str(error)
    if isinstance(error, AuthenticationError) and detail == "Unauthorized":
        detail = "Authentication required: send the header `Authorization: Bearer <token>`."
    body = {"detail": detail, "errors": getattr(error, "errors", [])}
    response = api.create_response(request, body, status=error.status_code)
    if error.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="linkblog"'
    return response


@api.exception_handler(Http404)
def not_found(request, error):
    return api.create_response(request, {"detail": str(error) or "Not found.", "errors": []}, status=404)


def responses(ok_status, ok_schema, *error_statuses):
    return {ok_status: ok_schema, **{status: Problem for status in error_statuses}}


READ_ERRORS = (401, 422)
WRITE_ERRORS = (400, 401, 403, 404, 409, 422)


# Schemas: what the API reads and writes. Inputs mirror the models' rules so the schema tells the truth.


RFC3339_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def rfc3339_text(value):
    """Only the date-time form the schema promises: no Unix timestamps, no dates without a zone."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339_DATETIME.match(value)):
        return value
    raise ValueError("Expected a date-time with a time zone, e.g. 2024-05-01T12:00:00Z")


def as_utc(value):
    """A datetime as UTC, refusing ones too near the ends of the calendar to convert."""
    if value is None:
        return value
    try:
        value = value.astimezone(dt_timezone.utc)
        value + timedelta(days=1)  # a post's day must have an end
    except OverflowError:
        raise ValueError("Date is out of range.")
    return value


def utf8_text(value):
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Text must be valid Unicode (no lone surrogates).")
    return value


def drop_default(field_schema):
    """An optional field whose absence means "unchanged" or "made for you": null is no valid value."""
    field_schema.pop("default", None)


TagName = Annotated[
    str,
    StringConstraints(pattern=TAG_PATTERN, min_length=1, max_length=64, to_lower=True),
    Field(description="A tag: letters, digits, hyphens and underscores; stored lower case.", examples=["django"]),
]
When = Annotated[datetime, BeforeValidator(rfc3339_text), AfterValidator(as_utc)]
PostId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
TagInPath = Annotated[str, PathParam(pattern=TAG_PATTERN, max_length=64)]


def text(max_length=None, min_length=0, pattern=NO_NUL_PATTERN, **extra):
    """A string field with the model's length limits, no NUL characters and valid Unicode."""
    return Annotated[
        str,
        StringConstraints(pattern=pattern, max_length=max_length, min_length=min_length),
        AfterValidator(utf8_text),
        Field(**extra),
    ]


Url = text(1000, 1, pattern=r"^https?://[^\x00\s]+$", description="An http(s) URL", examples=["https://example.com/"])
OptionalUrl = text(1000, pattern=r"^(https?://[^\x00\s]+)?$", description="An http(s) URL, or empty")


class InputSchema(Schema):
    """A JSON object sent to the API: anything else (a list, a number) is refused."""

    @model_validator(mode="before")
    @classmethod
    def must_be_an_object(cls, value):
        if not isinstance(getattr(value, "_obj", value), dict):  # ninja wraps what it validates
            raise ValueError("Expected a JSON object.")
        return value


class PostIn(InputSchema):
    """Fields every kind shares. `created` defaults to now, `slug` is made from the title when empty."""

    created: When = Field(None, description="Defaults to now (or, when editing, the post's date)", json_schema_extra=drop_default)
    slug: Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_]*$", max_length=64)] = Field(
        "", description="Empty: keep the post's slug, or make one from the title for a new post"
    )
    tags: list[TagName] = Field(default=[], max_length=100)
    is_draft: StrictBool = False


class EntryIn(PostIn):
    title: text(255, 1)
    body: text(min_length=1, description="Markdown")


class BlogmarkIn(PostIn):
    link_url: Url
    link_title: text(255, 1)
    via_url: OptionalUrl = ""
    via_title: text(255) = ""
    commentary: text(description="Markdown") = ""


class QuotationIn(PostIn):
    quotation: text(min_length=1, description="Markdown")
    source: text(255, 1)
    source_url: OptionalUrl = ""


def patch_schema(schema):
    """The same fields, each optional: a PATCH changes only the fields it sends."""
    fields = {}
    for name, info in schema.model_fields.items():
        fields[name] = (info.rebuild_annotation(), Field(None, description=info.description, json_schema_extra=drop_default))
    return create_model(schema.__name__.removesuffix("In") + "Patch", __base__=InputSchema, **fields)


class PostOut(Schema):
    id: int
    created: datetime
    slug: str
    tags: list[str]
    is_draft: bool
    url: str = Field(description="The post's permalink")
    html: str = Field(description="The rendered, sanitized HTML")

    @staticmethod
    def resolve_tags(post):
        return [tag.tag for tag in post.tags.all()]

    @staticmethod
    def resolve_url(post):
        return settings.LINKBLOG_BASE_URL + post.get_absolute_url()


class EntryOut(PostOut):
    type: Literal["entry"]
    title: str
    body: str
    excerpt_html: str
    word_count: int

    @staticmethod
    def resolve_type(post):
        return post.kind


class BlogmarkOut(PostOut):
    type: Literal["blogmark"]
    link_url: str
    link_title: str
    via_url: str
    via_title: str
    commentary: str

    @staticmethod
    def resolve_type(post):
        return post.kind


class QuotationOut(PostOut):
    type: Literal["quotation"]
    quotation: str
    source: str
    source_url: str

    @staticmethod
    def resolve_type(post):
        return post.kind


Item = Union[EntryOut, BlogmarkOut, QuotationOut]  # told apart by `type`


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
    description: text(description="Markdown, shown on the tag page")


class TagRename(InputSchema):
    to: TagName


class TagMerge(InputSchema):
    into: TagName


# Reading.


def visible_posts(request, model):
    """All posts of a kind for a caller allowed to see drafts, published ones for everyone else."""
    return model.objects.all() if may_see_drafts(request, model) else published(model)


def posts_with_every_tag(model, names):
    """A subquery of the ids of `model` posts carrying all of `names`: one join however many names
    (a join per name made PostgreSQL spend seconds planning a query that named twenty)."""
    names = set(names)
    post_id = f"{model.kind}_id"
    links = model.tags.through.objects.filter(tag__tag__in=names).values(post_id)
    return links.annotate(matched=Count("tag", distinct=True)).filter(matched=len(names)).values(post_id)


def filter_posts(request, model, filters):
    posts = visible_posts(request, model)
    if filters.is_draft is not None:
        if caller(request) is None:
            raise ApiProblem(401, "Only authenticated callers can filter by draft status.")
        posts = posts.filter(is_draft=filters.is_draft)
    if filters.tag:
        posts = posts.filter(pk__in=posts_with_every_tag(model, filters.tag))
    if filters.year is not None:
        posts = posts.filter(created__year=filters.year)
    if filters.month is not None:
        posts = posts.filter(created__month=filters.month)
    if filters.since is not None:
        posts = posts.filter(created__gte=filters.since)
    if filters.before is not None:
        posts = posts.filter(created__lt=filters.before)
    return posts


def page_of(queryset, page, load=list, count=None):
    """One slice of a newest-first list and the total count (`count()` unless the caller has a
    cheaper way): two queries, plus `load`'s."""
    count = queryset.count if count is None else count
    return {"count": count(), "items": load(queryset[page.offset : page.offset + page.limit])}


@api.get("/items", auth=READERS, response=responses(200, ItemsPage, *READ_ERRORS), tags=["Posts of every kind"],
         summary="List posts of every kind")
def list_items(request, filters: Query[ItemFilters], page: Query[Page]):
    """Posts of every kind, newest first (best match first with `q`), each with its `type`. Drafts only
    for authenticated callers."""
    kinds = filters.type or list(POST_MODELS)
    querysets = {kind: filter_posts(request, POST_MODELS[kind], filters) for kind in dict.fromkeys(kinds)}
    if filters.q.strip():
        results, _ = search_posts(filters.q, querysets)
        return page_of(results, page, load_posts)
    return page_of(mixed_posts(querysets), page, load_posts, count=lambda: count_mixed_posts(querysets))


def get_post(request, model, post_id):
    post = visible_posts(request, model).filter(pk=post_id).prefetch_related("tags").first()
    if post is None:
        raise ApiProblem(404, f"No {model.kind} with id {post_id}.")
    return post


# Writing: validate with the model's own rules, then save post and tags in one transaction.


def get_or_create_tags(names):
    """The tags with these names, created when new."""
    return [Tag.objects.get_or_create(tag=name)[0] for name in dict.fromkeys(names)]


def validate_post(post):
    """The model's rules: 422 for a bad field, 409 for a slug another post uses that day."""
    try:
        post.clean_fields()
    except ValidationError as error:
        raise ApiProblem(422, "Invalid post: " + " ".join(error.messages), errors_of(error))
    try:
        post.clean()
        post.validate_constraints()
    except ValidationError as error:
        status = 409 if "slug" in error.message_dict else 422
        raise ApiProblem(status, " ".join(error.messages), errors_of(error))


def save_post(post, fields):
    """Apply `fields` (tags included) to `post` and store it, all or nothing."""
    tags = fields.pop("tags", None)
    if not fields.get("created"):
        fields.pop("created", None)  # keep the post's date (a new post's defaults to now)
    if not fields.get("slug"):
        fields.pop("slug", None)  # keep the post's slug (a new post gets one from its title)
    for name, value in fields.items():
        setattr(post, name, value)
    with transaction.atomic():
        validate_post(post)
        post.save()
        if tags is not None:
            post.tags.set(get_or_create_tags(tags))
    return type(post).objects.prefetch_related("tags").get(pk=post.pk)


def register_kind(model, schema_in, schema_out, path):
    """List, create, read, replace, update and delete endpoints for one kind of post."""
    kind = model.kind
    one = f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    schema_patch = patch_schema(schema_in)
    item_path = f"{path}/{{post_id}}"
    page_schema = type(f"{model.__name__}Page", (Schema,), {"__annotations__": {"count": int, "items": list[schema_out]}})

    def list_posts(request, filters: Query[PostFilters], page: Query[Page]):
        posts = filter_posts(request, model, filters).order_by("-created", "-pk").prefetch_related("tags")
        return page_of(posts, page)

    def create_post(request, payload: schema_in):
        require_permission(request, "add", model)
        return Status(201, save_post(model(), payload.dict()))

    def read_post(request, post_id: PostId):
        return get_post(request, model, post_id)

    def replace_post(request, post_id: PostId, payload: schema_in):
        require_permission(request, "change", model)
        return save_post(get_post(request, model, post_id), payload.dict())

    def update_post(request, post_id: PostId, payload: schema_patch):
        require_permission(request, "change", model)
        return save_post(get_post(request, model, post_id), payload.dict(exclude_unset=True))

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
register_kind(Blogmark, BlogmarkIn, BlogmarkOut, "/blogmarks")
register_kind(Quotation, QuotationIn, QuotationOut, "/quotations")


# Tags: list with counts, describe, rename and merge (old names redirect to the new tag page).

TAG_SORTS = {"name": ["tag"], "count": ["-post_count", "tag"]}


def get_tag(name):
    tag = tags_with_counts().filter(tag=name.lower()).first()
    if tag is None:
        raise ApiProblem(404, f"No tag “{name}”.")
    return tag


def with_count(tag):
    return get_tag(tag.tag)


@api.get("/tags", auth=READERS, response=responses(200, TagsPage, *READ_ERRORS), tags=["Tags"])
def list_tags(request, page: Query[Page], sort: Literal["name", "count"] = "name"):
    """Every tag with its number of published posts, by name or by count (most used first)."""
    return page_of(tags_with_counts().order_by(*TAG_SORTS[sort]), page)


@api.get("/tags/{tag}", auth=READERS, response=responses(200, TagOut, 401, 404, 422), tags=["Tags"])
def read_tag(request, tag: TagInPath):
    return get_tag(tag)


@api.patch("/tags/{tag}", response=responses(200, TagOut, *WRITE_ERRORS), tags=["Tags"])
def describe_tag(request, tag: TagInPath, payload: TagPatch):
    """Change a tag's description (Markdown)."""
    require_permission(request, "change", Tag)
    found = get_tag(tag)
    found.description = payload.description
    found.save()
    return with_count(found)


@api.post("/tags/{tag}/rename", response=responses(200, TagOut, *WRITE_ERRORS), tags=["Tags"])
def rename_tag(request, tag: TagInPath, payload: TagRename):
    """Give a tag a new name; its old page then redirects (301) to the new one. 409 if the name is taken."""
    require_permission(request, "change", Tag)
    found = get_tag(tag)
    with transaction.atomic():
        if Tag.objects.filter(tag=payload.to).exclude(pk=found.pk).exists():
            raise ApiProblem(409, f"A tag “{payload.to}” already exists: merge into it instead.", [{"field": "to", "message": "Tag exists."}])
        old_name = found.tag
        if payload.to != old_name:
            TagRedirect.objects.filter(old_tag=payload.to).delete()
            found.tag = payload.to
            found.save()
            TagRedirect.objects.update_or_create(old_tag=old_name, defaults={"tag": found})
    return with_count(found)


def move_tagged_posts(source, target):
    """Give every post tagged `source` the tag `target` too (bulk, no duplicates)."""
    for model in POST_MODELS.values():
        through = model.tags.through
        post_ids = through.objects.filter(tag=source).values_list(f"{model.kind}_id", flat=True)
        links = [through(**{f"{model.kind}_id": post_id, "tag_id": target.pk}) for post_id in post_ids]
        through.objects.bulk_create(links, ignore_conflicts=True)


@api.post("/tags/{tag}/merge", response=responses(200, TagOut, *WRITE_ERRORS), tags=["Tags"])
def merge_tag(request, tag: TagInPath, payload: TagMerge):
    """Move every post of this tag to another tag and delete this one; its page redirects to the other."""
    require_permission(request, "change", Tag)
    require_permission(request, "delete", Tag)
    source, target = get_tag(tag), get_tag(payload.into)
    if source.pk == target.pk:
        raise ApiProblem(422, "A tag cannot be merged into itself.", [{"field": "into", "message": "Same tag."}])
    with transaction.atomic():
        move_tagged_posts(source, target)
        TagRedirect.objects.filter(tag=source).update(tag=target)
        old_name = source.tag
        source.delete()
        TagRedirect.objects.update_or_create(old_tag=old_name, defaults={"tag": target})
    posts_changed.send(sender=Tag)
    return with_count(target)


app.route("api/", include=api.urls)


# --- Benchmark: a hello-world view through the whole stack, the ceiling bench/run.py compares with


def bench_hello(request):
    """The cheapest page the app can serve: same middleware, no database, no template."""
    return HttpResponse("Hello, world!\n", content_type="text/plain")


if env_bool("LINKBLOG_BENCH", False):  # never routed in a normal deployment
    app.route("/bench/hello/", name="bench_hello")(bench_hello)


# --- Serving: security headers, the shared page cache, and the WSGI handler built once per worker

from diskcache import DjangoCache  # noqa: E402


class ContentSecurityPolicyMiddleware:
    """Adds the LINKBLOG_CSP Content-Security-Policy header to every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.LINKBLOG_CSP:
            response.headers.setdefault("Content-Security-Policy", settings.LINKBLOG_CSP)
        return response


class PersistentDiskCache(DjangoCache):
    """DiskCache that keeps its SQLite connection between requests. Django closes every cache when a
    request ends, and DiskCache then reopens its file and re-runs its PRAGMAs on the next one: that
    cost 3 ms a request, ten times a whole hello-world page (the connection is per thread)."""

    def close(self, **kwargs):
        pass


PAGE_GENERATION_KEY = "page-generation"


def page_generation():
    """The current generation of cached pages: every visible write starts a new one."""
    generation = cache.get(PAGE_GENERATION_KEY)
    if generation is None:
        generation = uuid.uuid4().hex
        cache.add(PAGE_GENERATION_KEY, generation, timeout=None)
        generation = cache.get(PAGE_GENERATION_KEY, generation)
    return generation


def forget_cached_pages(**kwargs):
    """Make every cached page unreachable, in every worker: the generation is part of every key."""
    cache.set(PAGE_GENERATION_KEY, uuid.uuid4().hex, timeout=None)


def forget_cached_pages_now_and_after_commit(**kwargs):
    """Now (so the writer's own next read is fresh) and after commit (so a page rendered
    from the old rows by a reader in between is never served)."""
    forget_cached_pages()
    transaction.on_commit(forget_cached_pages)


def connect_cache_invalidation():
    posts_changed.connect(forget_cached_pages_now_and_after_commit, dispatch_uid="forget-cached-pages")


connect_cache_invalidation()


class AnonymousPageCacheMiddleware:
    """Serves anonymous GETs of public pages and feeds from the shared cache.

    A request carrying a session cookie (a logged-in author) is never answered from the cache and
    never fills it; neither are the admin and the API, nor responses that set cookies or say
    they are private.
    """

    EXCLUDED_PREFIXES = ("/admin/", "/api/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not self.is_cacheable_request(request):
            return self.get_response(request)
        key = self.cache_key(request)
        response = cache.get(key)
        if response is not None:
            response["X-Page-Cache"] = "hit"
            return response
        response = self.get_response(request)
        if self.is_cacheable_response(response):
            patch_cache_control(response, public=True, max_age=settings.LINKBLOG_PAGE_MAX_AGE)
            # One chunk, as pages have: a feed is written in hundreds of small pieces, and sending
            # them one by one made a cached feed eight times slower than a cached page.
            response.content = response.content
            cache.set(key, response)
        response["X-Page-Cache"] = "miss"
        return response

    def is_cacheable_request(self, request):
        return (
            settings.LINKBLOG_PAGE_CACHE
            and request.method in ("GET", "HEAD")
            and settings.SESSION_COOKIE_NAME not in request.COOKIES
            and "HTTP_AUTHORIZATION" not in request.META
            and not request.path.startswith(self.EXCLUDED_PREFIXES)
        )

    def is_cacheable_response(self, response):
        cache_control = response.get("Cache-Control", "")
        return (
            response.status_code == 200
            and not response.streaming
            and not response.cookies
            and "private" not in cache_control
            and "no-cache" not in cache_control
            and "no-store" not in cache_control
        )

    def cache_key(self, request):
        url = f"{request.scheme}://{request.get_host()}{request.get_full_path()}"
        return f"page:{page_generation()}:{hashlib.sha256(url.encode()).hexdigest()}"


def wsgi_application():
    """The production handler: `gunicorn 'linkblog:wsgi_application()'` builds it once per worker.

    (nanodjango's own `app.wsgi` rebuilds Django's handler on every request.)
    """
    from django.core.wsgi import get_wsgi_application

    app._prepare()
    return get_wsgi_application()


# --- Import and export: our NDJSON format, browser bookmarks, Pinboard and feeds in; NDJSON and bookmarks out

import argparse  # noqa: E402
import codecs  # noqa: E402
import heapq  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from concurrent.futures.process import BrokenProcessPool  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import partial  # noqa: E402
from itertools import islice  # noqa: E402
from urllib.error import HTTPError  # noqa: E402
from urllib.request import Request, urlopen  # noqa: E402

import feedparser  # noqa: E402
from django.core.validators import URLValidator, validate_slug  # noqa: E402
from django.db import DatabaseError, transaction  # noqa: E402
from django.template.loader import get_template  # noqa: E402

IMPORT_FORMATS = ("ndjson", "netscape", "pinboard", "feed")
EXPORT_FORMATS = ("ndjson", "netscape")
# Each kind's own keys, in the order an export writes them (between "slug" and "created").
POST_FIELDS = {
    "entry": ("title", "body"),
    "blogmark": ("link_url", "link_title", "via_url", "via_title", "commentary"),
    "quotation": ("quotation", "source", "source_url"),
}
REQUIRED_FIELDS = {"entry": ("title", "body"), "blogmark": ("link_url", "link_title"), "quotation": ("quotation", "source")}
URL_FIELDS = {"link_url", "via_url", "source_url"}
COMMON_KEYS = {"type", "slug", "created", "tags", "is_draft"}
TAG_KEYS = {"type", "tag", "description"}
IMPORT_BATCH = 1000
MAX_LINE_BYTES = 2 * 1024 * 1024  # one NDJSON line: the longest blog post is far shorter
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024  # a bookmarks file, Pinboard export or feed, parsed whole
web_url_validator = URLValidator(schemes=["http", "https"])
LAST_DAY = datetime(9999, 12, 31, tzinfo=dt_timezone.utc)  # a post's day must end before datetime's range does


class ImportFailed(Exception):
    """The import cannot go on (unreadable file, unknown format): nothing was written."""


class BadRecord(Exception):
    """One record that cannot be imported; the message says why."""


class NotALink(BadRecord):
    """A bookmark that is not a web link (javascript:, place:, file:): left out, never an error."""


@dataclass
class Incoming:
    """A validated post from an import file: only the keys the file gave are set."""

    kind: str
    where: str
    fields: dict
    slug: str = ""
    created: datetime | None = None
    tags: list | None = None
    is_draft: bool | None = None
    left_out_tags: list = field(default_factory=list)  # other services' tags that cannot become slugs


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do), per kind."""

    counts: Counter = field(default_factory=Counter)  # (kind, outcome) -> number
    problems: list = field(default_factory=list)  # (where, message): bad records
    skipped: list = field(default_factory=list)  # (where, message): left out on purpose or by --skip-bad
    unknown_keys: Counter = field(default_factory=Counter)
    dry_run: bool = False
    failed: bool = False

    OUTCOMES = ("created", "updated", "unchanged", "skipped")
    KINDS = ("tag", "entry", "blogmark", "quotation")

    def rows(self):
        """(kind, [count per outcome]) for every kind the import touched."""
        kinds = [kind for kind in self.KINDS if any(self.counts[kind, outcome] for outcome in self.OUTCOMES)]
        if self.counts["other", "skipped"]:
            kinds.append("other")
        return [(kind, [self.counts[kind, outcome] for outcome in self.OUTCOMES]) for kind in kinds]

    def unknown_key_counts(self):
        """[(key, how often)], most frequent first: for the summary."""
        return self.unknown_keys.most_common()

    @property
    def changed(self):
        return any(self.counts[kind, outcome] for kind in self.KINDS for outcome in ("created", "updated"))


# Reading: each reader yields (where, dict in our NDJSON shape) or (where, BadRecord)


def read_ndjson(stream, progress):
    """One JSON object per line, read line by line: the file is never held in memory whole."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        where = f"line {number}"
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            skip_rest_of_line(stream)
            yield where, BadRecord(f"is longer than {MAX_LINE_BYTES // (1024 * 1024)} MB")
            continue
        progress.update(stream)
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if raw.strip():
            yield where, parse_json_line(raw)


def skip_rest_of_line(stream):
    while (chunk := stream.readline(MAX_LINE_BYTES)) and not chunk.endswith(b"\n"):
        pass


def parse_json_line(raw):
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return BadRecord(f"is not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); NDJSON files are UTF-8")
    except json.JSONDecodeError as error:
        return BadRecord(f"is not valid JSON: {error.msg} (column {error.colno})")
    if not isinstance(record, dict):
        return BadRecord("is not a JSON object")
    return record


def read_document(stream):
    """A whole bookmarks file, Pinboard export or feed (these formats are parsed in one piece)."""
    data = stream.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ImportFailed(f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
    return data


def decode_text(data, encoding, what):
    """Bytes to text in the declared encoding, or a clear error naming the line of the first bad byte."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ImportFailed(f"the {what} declares an unknown character set “{encoding}”")
    try:
        return data.decode(codec.name).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ImportFailed(
            f"the {what} is not valid {encoding} text (byte 0x{data[error.start]:02x} on line {line}); "
            "save it as UTF-8 or declare its character set"
        )


def declared_charset(data):
    """The charset an HTML file names in its first few kilobytes, e.g. <META ... charset=UTF-8>."""
    match = re.search(rb"""charset=["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.I)
    return match.group(1).decode("ascii") if match else "utf-8"


def unix_time(value):
    """A browser's ADD_DATE (seconds since 1970; some write milli- or microseconds) as a UTC datetime."""
    seconds = float(value)
    while abs(seconds) > 1e11:
        seconds /= 1000
    return datetime(1970, 1, 1, tzinfo=dt_timezone.utc) + timedelta(seconds=seconds)


class NetscapeBookmarks(HTMLParser):
    """Browser bookmark files: <DT><A HREF ADD_DATE TAGS PRIVATE>title</A> then an optional <DD>note."""

    IGNORED = {"script", "style", "title"}

    def __init__(self, folders_as_tags):
        super().__init__(convert_charrefs=True)
        self.folders_as_tags = folders_as_tags
        self.folders, self.pending_folder = [], None
        self.bookmarks = []  # [line, attributes, title, note, folders]
        self.capture, self.ignoring = None, 0
        self.note_owner = None  # the bookmark a <DD> right after it describes

    def handle_starttag(self, tag, attrs):
        if tag in self.IGNORED:
            self.ignoring += 1
        elif tag == "a":
            self.end_note()
            self.note_owner = [self.getpos()[0], dict(attrs), "", None, list(self.folders)]
            self.bookmarks.append(self.note_owner)
            self.capture = "title"
        elif tag == "h3":
            self.end_note()
            self.pending_folder, self.capture = "", "folder"
        elif tag == "dl":
            self.end_note()
            self.folders.append(self.pending_folder)
            self.pending_folder = None
        elif tag == "dd" and self.note_owner and self.capture is None and self.note_owner[3] is None:
            self.note_owner[3], self.capture = "", "note"
        elif tag == "dt":
            self.end_note()

    def handle_endtag(self, tag):
        if tag in self.IGNORED:
            self.ignoring = max(0, self.ignoring - 1)
        elif tag in ("a", "h3"):
            self.capture = None
        elif tag == "dl":
            self.end_note()
            if self.folders:
                self.folders.pop()

    def handle_data(self, data):
        if self.ignoring:
            return
        if self.capture == "title":
            self.bookmarks[-1][2] += data
        elif self.capture == "note":
            self.bookmarks[-1][3] += data
        elif self.capture == "folder":
            self.pending_folder += data

    def end_note(self):
        """A note ends at the next item or folder; a folder's own <DD> describes no bookmark."""
        if self.capture == "note":
            self.capture = None
        self.note_owner = None

    def records(self):
        for line, attributes, title, note, folders in self.bookmarks:
            yield f"line {line}", self.record(attributes, " ".join(title.split()), (note or "").strip(), folders)

    def record(self, attributes, title, note, folders):
        url = (attributes.get("href") or "").strip()
        if not url:
            return BadRecord("has a bookmark without HREF")
        if not is_web_url(url):
            return NotALink(f"is not a web link ({url.partition(':')[0]}:), left out")
        tags = (attributes.get("tags") or "").split(",")
        if self.folders_as_tags:
            tags += [name for name in folders if name]
        record = {"type": "blogmark", "link_url": url, "link_title": title or url, "commentary": note,
                  "tags": tags, "is_draft": attributes.get("private") == "1"}
        if attributes.get("add_date"):
            try:
                record["created"] = unix_time(attributes["add_date"])
            except (ValueError, OverflowError):
                return BadRecord(f"has an ADD_DATE that is not a date: “{attributes['add_date'][:40]}”")
        return record


def is_web_url(url):
    return url.partition(":")[0].lower() in ("http", "https")


def read_netscape(stream, progress, folders_as_tags=False):
    data = read_document(stream)
    parser = NetscapeBookmarks(folders_as_tags)
    parser.feed(decode_text(data, declared_charset(data), "bookmarks file"))
    parser.close()
    yield from progress.counted(parser.records(), len(parser.bookmarks))


def read_pinboard(stream, progress):
    """Pinboard's JSON export: a list of {href, description, extended, time, shared, toread, tags}."""
    text = decode_text(read_document(stream), "utf-8", "Pinboard file")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFailed(f"the Pinboard file is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})")
    if not isinstance(items, list):
        raise ImportFailed("the Pinboard file is not a JSON list of bookmarks")
    numbered = ((f"item {number}", pinboard_record(item)) for number, item in enumerate(items, 1))
    yield from progress.counted(numbered, len(items))


def pinboard_record(item):
    if not isinstance(item, dict):
        return BadRecord("is not a JSON object")
    url = item.get("href")
    if not isinstance(url, str) or not url.strip():
        return BadRecord("has no href")
    tags = str(item.get("tags") or "").split()
    if item.get("toread") == "yes":
        tags.append("toread")
    record = {"type": "blogmark", "link_url": url.strip(), "link_title": item.get("description") or url.strip(),
              "commentary": item.get("extended") or "", "tags": tags, "is_draft": item.get("shared") == "no"}
    if item.get("time"):
        record["created"] = item["time"]
    return record


def read_feed(stream, progress):
    """An Atom or RSS feed: every item becomes a blogmark (its summary, sanitized, the commentary)."""
    parsed = feedparser.parse(read_document(stream))
    if parsed.bozo and not parsed.entries:
        raise ImportFailed(f"not a readable Atom or RSS feed: {parsed.bozo_exception}")
    numbered = ((f"item {number}", feed_record(item)) for number, item in enumerate(parsed.entries, 1))
    yield from progress.counted(numbered, len(parsed.entries))


def feed_record(item):
    url = (item.get("link") or "").strip()
    if not url:
        return BadRecord("has no link")
    commentary = item.get("summary") or ""
    if item.get("content"):
        commentary = item.content[0].get("value") or commentary
    record = {"type": "blogmark", "link_url": url, "link_title": " ".join((item.get("title") or url).split()),
              "commentary": sanitize_html(commentary),
              "tags": [tag.get("term") or "" for tag in item.get("tags") or []]}
    moment = item.get("published_parsed") or item.get("updated_parsed")
    if moment:
        record["created"] = datetime(*moment[:6], tzinfo=dt_timezone.utc)
    return record


def open_feed_url(url):
    """Fetch a feed over HTTP(S) with a time limit; what comes back is parsed like a file."""
    try:
        with urlopen(Request(url, headers={"User-Agent": "linkblog-import"}), timeout=30) as response:
            return io.BytesIO(response.read(MAX_DOCUMENT_BYTES + 1))
    except HTTPError as error:
        raise ImportFailed(f"could not fetch {url}: HTTP {error.code} {error.reason}")
    except (OSError, ValueError) as error:
        raise ImportFailed(f"could not fetch {url}: {getattr(error, 'reason', error)}")


def detect_format(stream):
    """Guess the format from the first bytes: NDJSON, Pinboard JSON, bookmarks HTML, or a feed."""
    head = stream.read(4096)
    stream.seek(0)
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff").lstrip()
    lowered = text[:2048].lower()
    if text.startswith("{"):
        return "ndjson"
    if text.startswith("["):
        return "pinboard"
    if "netscape-bookmark-file" in lowered or re.match(r"(<!--.*?-->\s*)*<(dl|dt|meta|title|h1)\b", lowered, re.S):
        return "netscape"
    if re.search(r"<(rss|feed|rdf:rdf)\b", lowered):
        return "feed"
    raise ImportFailed("cannot tell the file's format: give --format ndjson, netscape, pinboard or feed")


# Validating: one record of the file against the model's rules


def clean_record(record, report, now, foreign_tags=False):
    """A tag as (name, description), or an Incoming post; BadRecord says what is wrong.

    With `foreign_tags` (bookmarks, Pinboard, feeds) tags are other services' names, made into slugs."""
    kind = record.get("type")
    if kind is None:
        raise BadRecord('has no "type" (tag, entry, blogmark or quotation)')
    if kind == "tag":
        report.unknown_keys.update(key for key in record if key not in TAG_KEYS)
        name = clean_tag_name(record.get("tag"), "tag")
        return name, clean_text(record, "description", Tag, required=False)
    if kind not in POST_MODELS:
        raise BadRecord(f"has an unknown type {json.dumps(kind)[:40]} (expected tag, entry, blogmark or quotation)")
    report.unknown_keys.update(key for key in record if key not in COMMON_KEYS and key not in POST_FIELDS[kind])
    model = POST_MODELS[kind]
    post = Incoming(kind=kind, where="", fields={})
    for name in POST_FIELDS[kind]:
        if name in record or name in REQUIRED_FIELDS[kind]:
            post.fields[name] = clean_text(record, name, model, required=name in REQUIRED_FIELDS[kind])
    post.slug = clean_slug(record.get("slug"))
    post.created = clean_created(record["created"]) if record.get("created") is not None else None
    if "tags" in record:
        post.tags, post.left_out_tags = slugified_tags(record["tags"]) if foreign_tags else (clean_tags(record["tags"]), [])
    if "is_draft" in record:
        if not isinstance(record["is_draft"], bool):
            raise BadRecord("has an is_draft that is not true or false")
        post.is_draft = record["is_draft"]
    if post.created is None:
        post.created = now
    return post


def clean_text(record, name, model, required):
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRecord(f"has no {name} (required)")
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"has a {name} that is not text")
    max_length = model._meta.get_field(name).max_length
    if max_length and len(value) > max_length:
        raise BadRecord(f"has a {name} longer than {max_length} characters")
    if name in URL_FIELDS:
        try:
            web_url_validator(value)
        except ValidationError:
            raise BadRecord(f"has a {name} that is not an http(s) URL: “{value[:80]}”")
    return value


def clean_slug(value):
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or len(value) > 64:
        raise BadRecord("has a slug that is not text of at most 64 characters")
    try:
        validate_slug(value)
    except ValidationError:
        raise BadRecord(f"has a slug with characters other than letters, digits, - and _: “{value}”")
    return value


def clean_created(value):
    """ISO 8601 with or without an offset (none means UTC), as an aware UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    else:
        if not isinstance(value, str):
            raise BadRecord("has a created date that is not text")
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadRecord(f"has a created date that is not ISO 8601: “{value[:40]}”")
    try:
        moment = moment.replace(tzinfo=dt_timezone.utc) if moment.tzinfo is None else moment.astimezone(dt_timezone.utc)
    except OverflowError:
        moment = LAST_DAY
    if moment >= LAST_DAY:
        raise BadRecord(f"has a created date past the end of 9999-12-30 UTC (a post needs a day after it): “{value}”")
    return moment


def clean_tags(value):
    if not isinstance(value, list):
        raise BadRecord("has tags that are not a list")
    return list(dict.fromkeys(clean_tag_name(name, "tags") for name in value))


def slugified_tags(names):
    """Other services' tags (“Web Dev”, “C++”) as our slugs, and the names no slug can be made from."""
    slugs = {name: slugify(name)[:64] for name in names if name.strip()}
    return list(dict.fromkeys(slug for slug in slugs.values() if slug)), [name for name, slug in slugs.items() if not slug]


def clean_tag_name(value, key):
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"has an empty or non-text {key} entry")
    name = value.strip().lower()
    if len(name) > 64:
        raise BadRecord(f"has a tag longer than 64 characters: “{name[:40]}…”")
    try:
        validate_slug(name)
    except ValidationError:
        raise BadRecord(f"has a tag that is not a slug (letters, digits, - and _): “{name[:64]}”")
    return name


# Writing: tags and posts in bulk, one transaction, existing posts matched without a query per line


def utc_day(moment):
    return moment.astimezone(dt_timezone.utc).date()


@dataclass
class Pending:
    """A post this import creates, found again by a later line of the same file."""

    where: str


# A post given without a slug is found again by these fields: a blogmark by its link (on any day),
# an entry by its title and a quotation by its source and words (on the same UTC day).
NATURAL_KEYS = {"entry": ("title",), "blogmark": ("link_url",), "quotation": ("source", "quotation")}


def natural_key(kind, created, values):
    day = None if kind == "blogmark" else utc_day(created)
    return (kind, day, *(hash(value) for value in values))


class PostIndex:
    """Every existing post's identity, loaded once: (kind, UTC day, slug) and its natural key."""

    def __init__(self):
        self.by_slug, self.by_natural_key = {}, {}
        for kind, model in POST_MODELS.items():
            rows = model.objects.order_by("created", "pk").values_list("pk", "created", "slug", *NATURAL_KEYS[kind])
            for pk, created, slug, *values in rows.iterator(5000):
                self.by_slug[kind, utc_day(created), slug] = pk
                self.by_natural_key.setdefault(natural_key(kind, created, values), pk)

    @staticmethod
    def natural_key(post):
        return natural_key(post.kind, post.created, [post.fields[name] for name in NATURAL_KEYS[post.kind]])

    def find(self, post):
        """The id (or Pending) of the post this record is, or None for a new post."""
        if post.slug:
            return self.by_slug.get((post.kind, utc_day(post.created), post.slug))
        return self.by_natural_key.get(self.natural_key(post))

    def new_slug(self, post, model_post):
        """The slug a new post gets: its own, or one made from its title, unique on its day across kinds."""
        if post.slug:
            return post.slug
        day, base = utc_day(post.created), model_post.slug_base()
        slug, number = base, 2
        while any((kind, day, slug) in self.by_slug for kind in POST_MODELS):
            slug, number = f"{base}-{number}", number + 1
        return slug

    def add(self, post, slug, where):
        pending = Pending(where)
        self.by_slug[post.kind, utc_day(post.created), slug] = pending
        self.by_natural_key.setdefault(self.natural_key(post), pending)


class Importer:
    """Reads records, validates them, and writes them in bulk inside ONE transaction."""

    def __init__(self, skip_bad=False, dry_run=False, foreign_tags=False, render_map=map):
        self.skip_bad, self.report, self.foreign_tags = skip_bad, ImportReport(dry_run=dry_run), foreign_tags
        self.render_map = render_map  # map, or a pool's map that renders in other processes
        self.now = timezone.now().replace(microsecond=0)
        self.seen_existing = {}  # (kind, pk) -> where it was first seen in this file
        self.declared_tags = {}  # tag name -> where this file declared it

    def run(self, records):
        """Import every record; on a bad record (without --skip-bad) nothing at all is written."""
        with transaction.atomic():
            self.tags = dict(Tag.objects.values_list("tag", "pk"))
            self.tag_descriptions = dict(Tag.objects.values_list("tag", "description"))
            self.index = PostIndex()
            self.search_index = SearchIndexBatch(connection)
            while chunk := list(islice(records, IMPORT_BATCH)):
                self.import_chunk(chunk)
            self.report.failed = bool(self.report.problems) and not self.skip_bad
            if self.report.failed or self.report.dry_run:
                transaction.set_rollback(True)  # which also puts the search index triggers back
            else:
                self.search_index.finish()
                if self.report.changed:
                    transaction.on_commit(lambda: posts_changed.send(sender=Importer))
        return self.report

    def import_chunk(self, chunk):
        tags, posts = [], []
        for where, record in chunk:
            try:
                cleaned = self.clean(record)
            except BadRecord as problem:
                self.refuse(where, record, problem)
                continue
            if isinstance(cleaned, Incoming):
                cleaned.where = where
                posts.append(cleaned)
                self.report.skipped += [(where, f"has the tag “{name}”, which cannot become a slug (a-z, 0-9, -), left out")
                                        for name in cleaned.left_out_tags]
            else:
                tags.append((where, *cleaned))
        if self.report.problems and not self.skip_bad:
            return  # the import will be rolled back: only keep finding problems
        self.write_tags(tags, posts)
        self.write_posts(posts)

    def clean(self, record):
        if isinstance(record, BadRecord):
            raise record
        return clean_record(record, self.report, self.now, self.foreign_tags)

    def refuse(self, where, record, problem):
        kind = record.get("type") if isinstance(record, dict) else None
        kind = "blogmark" if isinstance(problem, NotALink) else kind
        self.report.counts[kind if kind in ImportReport.KINDS else "other", "skipped"] += 1
        if isinstance(problem, NotALink):
            self.report.skipped.append((where, str(problem)))
        elif self.skip_bad:
            self.report.skipped.append((where, str(problem)))
        else:
            self.report.problems.append((where, str(problem)))

    # Tags

    def write_tags(self, declared, posts):
        """Create the tags declared or used in this chunk, and update changed descriptions."""
        new, changed = {}, []
        for where, name, description in declared:
            if name in self.declared_tags:
                self.note_duplicate("tag", where, f"declares the tag “{name}” again ({self.declared_tags[name]} did), left out")
                continue
            self.declared_tags[name] = where
            if name not in self.tags:
                new[name] = Tag(tag=name, description=description, description_html=render_markdown(description))
            elif self.tag_descriptions[name] != description:
                changed.append(name)
                self.tag_descriptions[name] = description
            else:
                self.report.counts["tag", "unchanged"] += 1
        for post in posts:
            for name in post.tags or ():
                if name not in self.tags and name not in new:
                    new[name] = Tag(tag=name)
        Tag.objects.bulk_create(new.values())
        for tag in new.values():
            self.tags[tag.tag], self.tag_descriptions[tag.tag] = tag.pk, tag.description
        updated = [Tag(pk=self.tags[name], tag=name, description=self.tag_descriptions[name],
                       description_html=render_markdown(self.tag_descriptions[name])) for name in changed]
        Tag.objects.bulk_update(updated, ["description", "description_html"])
        self.report.counts["tag", "created"] += len(new)
        self.report.counts["tag", "updated"] += len(changed)

    def note_duplicate(self, kind, where, message):
        self.report.counts[kind, "skipped"] += 1
        self.report.skipped.append((where, message))

    # Posts

    def write_posts(self, posts):
        matches = {kind: {} for kind in POST_MODELS}  # kind -> {pk: Incoming}
        new = {kind: [] for kind in POST_MODELS}  # kind -> [(model object, Incoming)]
        for post in posts:
            model_post = POST_MODELS[post.kind](**post.fields)
            found = self.index.find(post)
            if isinstance(found, Pending) or (post.kind, found) in self.seen_existing:
                first = found.where if isinstance(found, Pending) else self.seen_existing[post.kind, found]
                self.note_duplicate(post.kind, post.where, f"is the same {post.kind} as {first}, left out")
            elif found is None:
                model_post.slug = self.index.new_slug(post, model_post)
                model_post.created, model_post.is_draft = post.created, bool(post.is_draft)
                self.index.add(post, model_post.slug, post.where)
                new[post.kind].append((model_post, post))
            else:
                self.seen_existing[post.kind, found] = post.where
                matches[post.kind][found] = post
        self.render([model_post for kind in POST_MODELS for model_post, _ in new[kind]])
        for kind, model in POST_MODELS.items():
            self.create_posts(model, new[kind])
            self.update_posts(model, matches[kind])

    def render(self, model_posts):
        """Render the posts' Markdown, all at once, so that a pool of processes can share the work."""
        texts = [(post.kind, getattr(post, post.markdown_field)) for post in model_posts]
        for model_post, fields in zip(model_posts, self.render_map(render_for_import, texts)):
            for name, value in fields.items():
                setattr(model_post, name, value)

    def create_posts(self, model, pairs):
        model.objects.bulk_create([model_post for model_post, _ in pairs])
        self.link_tags(model, [(model_post.pk, post.tags or []) for model_post, post in pairs])
        self.search_index.wrote(model.kind, [model_post.pk for model_post, _ in pairs])
        self.report.counts[model.kind, "created"] += len(pairs)

    def link_tags(self, model, tags_by_post):
        through, column = model.tags.through, f"{model.kind}_id"
        links = [through(**{column: pk, "tag_id": self.tags[name]}) for pk, names in tags_by_post for name in names]
        through.objects.bulk_create(links)

    def update_posts(self, model, posts_by_pk):
        """Apply what changed to existing posts; a post whose record matches it stays untouched."""
        if not posts_by_pk:
            return
        existing = model.objects.in_bulk(posts_by_pk)
        current_tags = defaultdict(set)
        column = f"{model.kind}_id"
        for pk, name in model.tags.through.objects.filter(**{f"{column}__in": posts_by_pk}).values_list(column, "tag__tag"):
            current_tags[pk].add(name)
        changed, retagged = [], []
        for pk, post in posts_by_pk.items():
            model_post = existing[pk]
            fields_changed = self.apply_changes(model_post, post)
            tags_changed = post.tags is not None and set(post.tags) != current_tags[pk]
            if fields_changed:
                changed.append(model_post)
            if tags_changed:
                retagged.append((pk, post.tags))
            outcome = "updated" if fields_changed or tags_changed else "unchanged"
            self.report.counts[model.kind, outcome] += 1
        self.render(changed)
        model.objects.bulk_update(changed, [*POST_FIELDS[model.kind], "created", "is_draft", *self.rendered_fields(model)])
        model.tags.through.objects.filter(**{f"{column}__in": [pk for pk, _ in retagged]}).delete()
        self.link_tags(model, retagged)
        self.search_index.wrote(model.kind, [post.pk for post in changed] + [pk for pk, _ in retagged])

    @staticmethod
    def rendered_fields(model):
        return [field.name for field in model._meta.concrete_fields if not field.editable and not field.primary_key]

    @staticmethod
    def apply_changes(model_post, post):
        """Copy the record's values onto the post; True when any differed."""
        values = dict(post.fields)
        if post.slug:  # matched by its day and slug: the time of day may change too
            values["created"] = post.created
        if post.is_draft is not None:
            values["is_draft"] = post.is_draft
        changed = False
        for name, value in values.items():
            if getattr(model_post, name) != value:
                setattr(model_post, name, value)
                changed = True
        return changed


def render_for_import(kind_and_text):
    """What a post of this kind stores from this Markdown: a task for a rendering process."""
    kind, text = kind_and_text
    return POST_MODELS[kind].rendered(text)


@contextmanager
def rendering_processes(processes):
    """A map() that renders Markdown on every core, for imports from the command line.

    Rendering is most of an import's work, and one process uses one core. The workers are forked, so
    they start with everything loaded; they never touch the database. Not for the web server's
    processes, which may have threads. Ctrl-C is left to the importing process, which rolls back.
    """
    if processes < 2:
        yield map
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=signal.signal,
                               initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        yield partial(pool.map, chunksize=25)
    finally:
        pool.shutdown(cancel_futures=True)


class Progress:
    """A progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, stream=None, total_bytes=0):
        self.stream = stream if stream is not None and stream.isatty() else None
        self.total_bytes, self.shown_at = total_bytes, 0.0

    def update(self, source):
        if self.stream and self.total_bytes:
            self.show(source.tell() / self.total_bytes)

    def counted(self, items, total):
        for number, item in enumerate(items, 1):
            if self.stream and total:
                self.show(number / total)
            yield item

    def show(self, fraction):
        if time.monotonic() - self.shown_at < 0.2 and fraction < 1:
            return
        self.shown_at = time.monotonic()
        done = int(fraction * 30)
        self.stream.write(f"\rimporting [{'#' * done}{' ' * (30 - done)}] {fraction:4.0%}")
        self.stream.flush()

    def finish(self):
        if self.stream and self.shown_at:
            self.stream.write("\r" + " " * 50 + "\r")
            self.stream.flush()


def import_file(stream, format=None, skip_bad=False, dry_run=False, folders_as_tags=False, progress=None,
                render_map=map):
    """Import a binary file object (NDJSON is read line by line); returns an ImportReport."""
    progress = progress or Progress()
    format = format or detect_format(stream)
    readers = {
        "ndjson": lambda: read_ndjson(stream, progress),
        "netscape": lambda: read_netscape(stream, progress, folders_as_tags),
        "pinboard": lambda: read_pinboard(stream, progress),
        "feed": lambda: read_feed(stream, progress),
    }
    try:
        importer = Importer(skip_bad=skip_bad, dry_run=dry_run, foreign_tags=format != "ndjson", render_map=render_map)
        return importer.run(readers[format]())
    finally:
        progress.finish()


# Exporting: deterministic, so that export, import into an empty database, export is byte-identical


def export_created(moment):
    return moment.astimezone(dt_timezone.utc).isoformat()


def export_ndjson(include_drafts=True):
    """Lines of our NDJSON: tags by name, then posts by created, kind and slug; keys in a fixed order."""
    for tag in Tag.objects.order_by("tag").iterator(2000):
        yield json_line({"type": "tag", "tag": tag.tag, "description": tag.description})
    for kind, post in exported_posts(POST_MODELS, include_drafts):
        record = {"type": kind, "slug": post.slug}
        record.update((name, getattr(post, name)) for name in POST_FIELDS[kind])
        record.update(created=export_created(post.created), tags=sorted(tag.tag for tag in post.tags.all()),
                      is_draft=post.is_draft)
        yield json_line(record)


def json_line(record):
    return json.dumps(record, ensure_ascii=False) + "\n"


def exported_posts(models, include_drafts):
    """(kind, post) for every post of these models, oldest first, merged across kinds without loading all."""
    streams = [sorted_posts(kind, model, include_drafts) for kind, model in models.items()]
    for _, kind, post in heapq.merge(*streams, key=lambda item: item[0]):
        yield kind, post


def sorted_posts(kind, model, include_drafts):
    posts = model.objects.all() if include_drafts else published(model)
    for post in posts.order_by("created", "slug").prefetch_related("tags").iterator(2000):
        yield (post.created, kind, post.slug), kind, post


def export_netscape(include_drafts=True):
    """The blogmarks as a browser bookmarks file (entries and quotations are not bookmarks)."""
    yield get_template("export/bookmarks_start.html").render({})
    bookmark = get_template("export/bookmark.html")
    for _, post in exported_posts({"blogmark": Blogmark}, include_drafts):
        yield bookmark.render({"post": post, "add_date": int(post.created.timestamp()),
                               "tags": ",".join(sorted(tag.tag for tag in post.tags.all()))})
    yield get_template("export/bookmarks_end.html").render({})


EXPORTERS = {"ndjson": export_ndjson, "netscape": export_netscape}


# --- Import and export in the admin: upload a file, download an export, the bookmarklet

from django import forms  # noqa: E402
from django.contrib.admin.views.decorators import staff_member_required  # noqa: E402
from django.http import StreamingHttpResponse  # noqa: E402

# Unknown /admin/... URLs fall through to the routes below instead of the admin's own 404 view.
admin.site.final_catch_all_view = False


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(
        choices=[("", "Detect from the content"), ("ndjson", "linkblog NDJSON"), ("netscape", "Browser bookmarks (HTML)"),
                 ("pinboard", "Pinboard JSON"), ("feed", "Atom or RSS feed")],
        required=False,
    )
    folders_as_tags = forms.BooleanField(required=False, label="Bookmark folders become tags")
    skip_bad = forms.BooleanField(required=False, label="Skip bad records and import the rest")
    dry_run = forms.BooleanField(required=False, label="Dry run: check and count, write nothing")


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[("ndjson", "linkblog NDJSON (everything)"), ("netscape", "Browser bookmarks (blogmarks)")])
    drafts = forms.BooleanField(required=False, initial=True, label="Include drafts")


def admin_page(request, template, status=200, **context):
    context = {**admin.site.each_context(request), **context}
    return render(request, template, context, status=status)


@app.route("admin/linkblog/import/", name="admin_import")
@staff_member_required
def admin_import(request):
    """Upload a file to import (same rules and summary as the command line), or download an export."""
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    report, error, status = None, None, 200
    if form.is_bound and form.is_valid():
        try:
            report = import_file(form.cleaned_data["file"].file, form.cleaned_data["format"] or None,
                                 skip_bad=form.cleaned_data["skip_bad"], dry_run=form.cleaned_data["dry_run"],
                                 folders_as_tags=form.cleaned_data["folders_as_tags"])
        except ImportFailed as failure:
            error = str(failure)
        if error or report.failed:
            status = 400
    elif form.is_bound:
        status = 400
    return admin_page(request, "admin/linkblog/import_export.html", status, title="Import and export",
                      form=form, export_form=ExportForm(), report=report, error=error)


@app.route("admin/linkblog/export/", name="admin_export")
@staff_member_required
def admin_export(request):
    """Download the whole blog as NDJSON, or the blogmarks as a bookmarks file."""
    form = ExportForm(request.GET)
    if not form.is_valid():
        return admin_page(request, "admin/linkblog/import_export.html", 400, title="Import and export",
                          form=ImportForm(), export_form=form, error="Choose an export format.")
    format = form.cleaned_data["format"]
    extension, content_type = {"ndjson": ("ndjson", "application/x-ndjson"), "netscape": ("html", "text/html")}[format]
    response = StreamingHttpResponse(EXPORTERS[format](form.cleaned_data["drafts"]), content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="linkblog-{timezone.now():%Y-%m-%d}.{extension}"'
    return response


@app.route("admin/linkblog/bookmarklet/", name="admin_bookmarklet")
@staff_member_required
def admin_bookmarklet(request):
    """A link to drag to the bookmarks bar: it opens the add-blogmark form filled in from the page."""
    add_url = request.build_absolute_uri(reverse("admin:linkblog_blogmark_add"))
    return admin_page(request, "admin/linkblog/bookmarklet.html", title="Bookmarklet", add_url=add_url)


# --- Commands: `python linkblog.py NAME ...` for our own commands, nanodjango's for the rest ------

COMMANDS = {}


def command(function):
    """Register `function(args)` as `python linkblog.py NAME ARGS...`, NAME being its name without `_command`."""
    COMMANDS[function.__name__.removesuffix("_command").replace("_", "-")] = function
    return function


@command
def token_command(args):
    """`python linkblog.py token USERNAME [--name NAME]`: make an API token and print it, once."""
    from django.contrib.auth import get_user_model

    parser = argparse.ArgumentParser(prog="linkblog.py token", description="Create an API token for a user.")
    parser.add_argument("username")
    parser.add_argument("--name", default="", help="what the token is for, e.g. phone")
    options = parser.parse_args(args)
    user = get_user_model().objects.filter(username=options.username).first()
    if user is None:
        print(f"linkblog: no user named “{options.username}”.", file=sys.stderr)
        return 2
    print(ApiToken.issue(user, options.name[:100]))
    return 0


def import_arguments():
    parser = argparse.ArgumentParser(prog="python linkblog.py import", description="Import posts and tags from a file or feed URL.")
    parser.add_argument("file", metavar="FILE", help="an NDJSON, bookmarks HTML, Pinboard JSON or feed file, or a feed URL")
    parser.add_argument("--format", choices=IMPORT_FORMATS, help="the file's format (detected from its content when not given)")
    parser.add_argument("--skip-bad", action="store_true", help="import the good records and list the bad ones")
    parser.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    parser.add_argument("--folders-as-tags", action="store_true", help="bookmark folder names become tags (netscape)")
    parser.add_argument("--processes", type=positive_int, default=default_render_processes(), metavar="N",
                        help="processes that render Markdown (default: one per core, at most 4; "
                             "1 keeps a busy server's other cores free)")
    return parser


def default_render_processes():
    """One per core this process may run on, at most 4: each holds ~75 MB, and past that most of the time is
    the one process that reads and writes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 4)


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def open_import_source(name):
    """A binary file object for a path or, for an http(s) address, the fetched feed."""
    if is_web_url(name):
        return open_feed_url(name)
    return open(name, "rb")


@command
def import_command(args):
    """`python linkblog.py import FILE`: one transaction; a summary on stdout, problems on stderr."""
    options = import_arguments().parse_args(args)
    format = options.format or ("feed" if is_web_url(options.file) else None)
    try:
        with open_import_source(options.file) as stream, rendering_processes(options.processes) as render_map:
            size = os.fstat(stream.fileno()).st_size if hasattr(stream, "fileno") and not is_web_url(options.file) else 0
            report = import_file(stream, format, options.skip_bad, options.dry_run, options.folders_as_tags,
                                 progress=Progress(sys.stderr, size), render_map=render_map)
    except (ImportFailed, OSError, DatabaseError) as error:
        return command_error("import", error)
    except BrokenProcessPool:
        return command_error("import", "a rendering process died (out of memory?), nothing was written")
    except KeyboardInterrupt:
        return command_error("import", "interrupted, nothing was written")
    context = {"report": report, "source": options.file}
    print(render_to_string("import_problems.txt", context), end="", file=sys.stderr)
    if report.failed:
        return 1
    print(render_to_string("import_summary.txt", context), end="")
    return 0


@command
def export_command(args):
    """`python linkblog.py export [FILE]`: the whole blog (or its blogmarks as bookmarks) to a file or stdout."""
    parser = argparse.ArgumentParser(prog="python linkblog.py export", description="Export the blog.")
    parser.add_argument("file", metavar="FILE", nargs="?", help="where to write (standard output when not given)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="ndjson")
    parser.add_argument("--no-drafts", action="store_true", help="leave drafts out")
    options = parser.parse_args(args)
    try:
        if options.file:
            export_to_file(options.file, EXPORTERS[options.format](not options.no_drafts))
        else:
            output = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=True)
            output.writelines(EXPORTERS[options.format](not options.no_drafts))
            output.flush()
    except BrokenPipeError:
        # The reader stopped early (`export | head`): not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, DatabaseError) as error:
        return command_error("export", error)
    except KeyboardInterrupt:
        return command_error("export", "interrupted")
    return 0


def export_to_file(name, chunks):
    """Write beside the target and rename at the end, so a failed export never leaves half a file."""
    partial = Path(f"{name}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="\n") as output:
            output.writelines(chunks)
        os.replace(partial, name)
    except OSError as error:
        raise OSError(error.errno, error.strerror, name)
    finally:
        partial.unlink(missing_ok=True)


def command_error(name, error):
    """One line on stderr and exit status 1: never a traceback."""
    if isinstance(error, OSError) and error.filename:
        message = f"{error.filename}: {error.strerror}"
    elif isinstance(error, DatabaseError):
        message = f"database error: {error} (is the database migrated? nanodjango manage linkblog.py migrate)"
    else:
        message = str(error)
    print(f"linkblog {name}: {' '.join(message.split())}", file=sys.stderr)
    return 1


def main(argv):
    """Run one of our commands, or hand the arguments to nanodjango (`run`, `manage`, `serve`, ...)."""
    if argv and argv[0] in COMMANDS:
        app._prepare()
        return COMMANDS[argv[0]](argv[1:])
    app.invoke(default="run 127.0.0.1:8000")


# --- Production server: `python linkblog.py serve-production`, the one command a deployment runs


@command
def serve_production_command(args):
    """Migrate, collect static files, start a fresh page cache, then become gunicorn.

    `python linkblog.py serve-production [HOST:PORT] [GUNICORN OPTIONS...]`; HOST:PORT defaults to
    127.0.0.1:8000 (a reverse proxy in front), workers come from WEB_CONCURRENCY (default 2).
    """
    bind = args.pop(0) if args and not args[0].startswith("-") else "127.0.0.1:8000"
    secret_key(debug=False)
    os.environ["DJANGO_DEBUG"] = "0"
    call_command("migrate", interactive=False, verbosity=1)
    call_command("collectstatic", interactive=False, verbosity=0)
    forget_cached_pages()
    gunicorn = [
        sys.executable, "-m", "gunicorn",
        "--chdir", str(BASE_DIR),
        "--bind", bind,
        "--workers", str(env_int("WEB_CONCURRENCY", 2)),
        "--access-logfile", "-",
        "--no-control-socket",  # several servers may share a machine (and a service user has no home)
        *args,
        "linkblog:wsgi_application()",
    ]
    sys.stdout.flush()
    os.execv(sys.executable, gunicorn)


# --- Convert: hooks that let `nanodjango convert linkblog.py OUT --name=NAME` make a working project


class AppNameAsLabel(ast.NodeTransformer):
    """`app.app_name` (table names in SQL) is the app label, which the converted app keeps."""

    def visit_Attribute(self, node):
        if node.attr == "app_name" and ast.unparse(node.value) == "app":
            return ast.copy_location(ast.Constant(app.app_name), node)
        return self.generic_visit(node)


class ConvertPlugin:
    """What nanodjango's converter (0.17.1) does not do on its own, done for this file (README: Converting).

    It binds loop, comprehension, lambda and starred-assignment variables, knows imports made under
    another name, moves the ModelAdmin classes to admin.py, our middleware to middleware.py and our
    commands to management commands, keeps the signal connections made at import time, and writes
    every module's definitions in this file's order.
    """

    # Only meaningful in the single file: a converted project has manage.py and NAME/wsgi.py instead;
    # startproject's settings.py defines its own BASE_DIR (the project root).
    SINGLE_FILE_ONLY = {
        "ConvertPlugin", "AppNameAsLabel", "BASE_DIR", "main", "command", "COMMANDS", "wsgi_application",
        "serve_production_command", "bench_hello",  # bench/ drives the single file, not a converted project
    }

    @hookimpl
    def convert_init(self, converter):
        self.teach_reference_visitor()
        converter.used.update(self.SINGLE_FILE_ONLY)
        converter.used.update(function.__name__ for _, function, _ in app.templatetag._registered)
        converter.collect_definition = self.without_single_file_decorators(converter.collect_definition)

    @staticmethod
    def without_single_file_decorators(collect_definition):
        """A function copied into another module loses `@app.templatetag...` and `@command` (the
        template library and the management commands are written separately), and `app.app_name`
        becomes the app label it stands for."""
        from nanodjango.convert.utils import collect_references

        def is_single_file_decorator(decorator):
            source = ast.unparse(decorator)
            return source == "command" or source.startswith("app.templatetag.")

        def is_app_name(node):
            return isinstance(node, ast.Attribute) and node.attr == "app_name" and ast.unparse(node.value) == "app"

        def collect(name):
            source, references = collect_definition(name)
            definition = ast.parse(source).body[0]
            decorators = getattr(definition, "decorator_list", [])
            uses_app_name = any(is_app_name(node) for node in ast.walk(definition))
            if not uses_app_name and not any(is_single_file_decorator(decorator) for decorator in decorators):
                return source, references
            if hasattr(definition, "decorator_list"):
                definition.decorator_list = [decorator for decorator in decorators if not is_single_file_decorator(decorator)]
            definition = AppNameAsLabel().visit(definition)
            return ast.unparse(definition), collect_references(definition)

        return collect

    @staticmethod
    def teach_reference_visitor():
        from nanodjango.convert.reference import ReferenceVisitor

        def bind(visitor, target):
            """Every name a target stores to: `x`, `(kind, model)`, `first, *rest`."""
            visitor.current_scope.update(
                node.id for node in ast.walk(target) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
            )

        def visit_assign(visitor, node):
            for target in node.targets:
                bind(visitor, target)
            visitor.generic_visit(node)

        def visit_for(visitor, node):
            visitor.visit(node.iter)
            bind(visitor, node.target)
            for statement in node.body + node.orelse:
                visitor.visit(statement)

        def visit_comprehension(visitor, node):
            visitor.visit(node.iter)
            bind(visitor, node.target)
            for condition in node.ifs:
                visitor.visit(condition)

        def visit_lambda(visitor, node):
            visitor.push_scope()
            visitor.current_scope.update(argument.arg for argument in ast.walk(node.args) if isinstance(argument, ast.arg))
            visitor.visit(node.body)
            visitor.pop_scope()

        found_reference = ReferenceVisitor.found_reference

        def found_reference_except_dunders(visitor, node):
            if not (node.id.startswith("__") and node.id.endswith("__")):  # __file__ exists in every module
                found_reference(visitor, node)

        ReferenceVisitor.visit_Assign = visit_assign
        ReferenceVisitor.visit_For = visit_for
        ReferenceVisitor.visit_comprehension = visit_comprehension
        ReferenceVisitor.visit_Lambda = visit_lambda
        ReferenceVisitor.found_reference = found_reference_except_dunders

    @hookimpl
    def convert_collect_imports(self, converter):
        """Imports under another name: the converter files `ValidationError as NinjaValidationError`
        under `ValidationError`, hiding Django's. Refile every import, in file order, under the name
        the code uses."""
        imports = [node for node in ast.walk(converter.ast) if isinstance(node, (ast.Import, ast.ImportFrom))]
        for node in sorted(imports, key=lambda node: (node.lineno, node.col_offset)):
            for alias in node.names:
                converter.imports[alias.asname or alias.name] = ast.unparse(type(node)(**{**vars(node), "names": [alias]}))

    @hookimpl
    def convert_build_settings(self, converter, resolver, settings_ast):
        """Settings helpers in this file's order (the converter's own order is random); our middleware
        paths pointed at the app's middleware.py; WhiteNoise's hashed static files kept."""
        definitions = self.collect_definitions(converter, resolver, f"{converter.project_name}.settings")
        settings_ast.body[1:1] = [statement for source in definitions for statement in ast.parse(source).body]
        app_module = f"{converter.project_name}.{converter.app.app_name}"
        for node in ast.walk(settings_ast):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("linkblog."):
                node.value = f"{app_module}.middleware.{node.value.removeprefix('linkblog.')}"
        self.use_djangos_template_loaders(settings_ast)
        settings_ast.body += ast.parse(
            'STATIC_ROOT = BASE_DIR / "static-collected"\n'
            'STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},'
            ' "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}\n'
        ).body

    @staticmethod
    def use_djangos_template_loaders(settings_ast):
        """`TEMPLATES=cached_template_loaders` adjusts nanodjango's loader list; a converted project
        has Django's usual TEMPLATES instead (app templates, cached by Django when no loaders are listed)."""
        settings_ast.body = [
            node for node in settings_ast.body
            if not (isinstance(node, ast.FunctionDef) and node.name == "cached_template_loaders")
        ]
        for node in settings_ast.body:
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "TEMPLATES":
                node.value = ast.parse(
                    '[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,'
                    ' "OPTIONS": {"context_processors": ["django.template.context_processors.request",'
                    ' "django.contrib.auth.context_processors.auth", "django.contrib.messages.context_processors.messages"]}}]'
                ).body[0].value

    @staticmethod
    def collect_definitions(converter, resolver, module):
        """The sources of everything the resolver still needs, transitively, in this file's order."""
        definitions = {}
        pending = set(resolver.global_refs) - ConvertPlugin.SINGLE_FILE_ONLY
        resolver.global_refs.clear()
        while pending:
            name = pending.pop()
            definitions[name], references = converter.collect_definition(name)
            converter.imports[name] = f"from {module} import {name}"
            resolver.local_refs.add(name)
            resolver.add_references(references)  # imports are kept; our own names come back here
            pending |= resolver.global_refs - definitions.keys() - ConvertPlugin.SINGLE_FILE_ONLY
            resolver.global_refs.clear()
        positions = ConvertPlugin.original_positions(converter)
        return [definitions[name] for name in sorted(definitions, key=lambda name: positions.get(name, -1))]

    @staticmethod
    def original_positions(converter):
        """Where each top-level definition (or import-time call) sits in linkblog.py."""
        positions = {}
        for index, node in enumerate(converter.ast.body):
            positions[ConvertPlugin.defined_name(node)] = index
        return positions

    @staticmethod
    def defined_name(node):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            return node.name
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            return node.targets[0].id
        return ast.unparse(node)

    @staticmethod
    def import_time_calls(converter):
        """Statements like `connect_change_signals()`: calls of names in linkblog.py made at import time."""
        def called_name(call):  # `connect_signals` for connect_signals(), `post_migrate` for post_migrate.connect()
            function = call.func
            while isinstance(function, ast.Attribute):
                function = function.value
            return function.id if isinstance(function, ast.Name) else None

        return [
            node for node in converter.ast.body
            if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and called_name(node.value) in vars(converter.module)
            and called_name(node.value) != converter.app._instance_name  # app.route(...): the converter's
        ]

    @staticmethod
    def ninja_apis(converter):
        """Names of the module-level django-ninja APIs (our own NinjaAPI instances)."""
        return [
            name for name, value in vars(converter.module).items()
            if any(cls.__name__ == "NinjaAPI" for cls in type(value).__mro__)
        ]

    def api_members(self, converter):
        """What belongs with the API: the functions its decorators register, and the import-time calls
        of functions that use it (`register_kind(Entry, ...)`)."""
        from nanodjango.convert.utils import collect_references

        apis = set(self.ninja_apis(converter))
        functions, calls = [], []
        for node in converter.ast.body:
            decorators = getattr(node, "decorator_list", [])
            if any(ast.unparse(decorator).split(".")[0] in apis for decorator in decorators):
                functions.append(node.name)
        for node in self.import_time_calls(converter):
            if not isinstance(node.value.func, ast.Name):
                continue
            called, _ = converter.collect_definition(node.value.func.id)
            if apis & collect_references(ast.parse(called).body[0]):
                calls.append(node)
        return functions, calls

    @hookimpl
    def convert_build_app_models(self, converter, resolver, extra_src):
        """Calls made at import time (`connect_change_signals()`, `register_converter(...)`) move with
        the models: models.py is imported before anything else of the app, URL patterns included.
        (Calls that register API endpoints go to api.py.)"""
        from nanodjango.convert.utils import collect_references

        _, api_calls = self.api_members(converter)
        for node in self.import_time_calls(converter):
            if node not in api_calls:
                extra_src.append(ast.unparse(node))
                resolver.add_references(collect_references(node))

    @hookimpl
    def convert_build_app_views_done(self, converter):
        """A NinjaAPI of our own goes to api.py with its endpoints (the converter only knows `@app.api`
        and would leave them unused); urls.py then imports it from there."""
        apis = self.ninja_apis(converter)
        if apis:
            functions, calls = self.api_members(converter)
            self.write_module(converter, "api", [*apis, *functions], statements=calls)

    @hookimpl
    def convert_build_app_admin_done(self, converter):
        """The `@admin.register` ModelAdmin classes go to admin.py (the converter leaves them unused)."""
        model_admins = [
            name for name, value in vars(converter.module).items()
            if isinstance(value, type) and issubclass(value, admin.ModelAdmin) and value.__module__ == converter.module.__name__
        ]
        self.write_module(converter, "admin", model_admins, "from django.contrib import admin")

    @hookimpl
    def convert_build_app_templatetags_done(self, converter):
        """The classes settings name by dotted path (our middleware, the cache backend) go to
        middleware.py, where the settings now point; our commands (`python linkblog.py NAME`) become
        management commands (`python manage.py NAME`)."""
        dotted_paths = [*settings.MIDDLEWARE, *(cache["BACKEND"] for cache in settings.CACHES.values())]
        classes = [path.removeprefix("linkblog.") for path in dotted_paths if path.startswith("linkblog.")]
        self.write_module(converter, "middleware", classes)
        commands = {name: function.__name__ for name, function in COMMANDS.items() if function.__name__ not in self.SINGLE_FILE_ONLY}
        if commands:
            self.write_module(converter, "commands", list(commands.values()))
            self.write_management_commands(converter, commands)

    @staticmethod
    def write_management_commands(converter, commands):
        folder = converter.app_path / "management" / "commands"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").touch()
        (folder / "__init__.py").touch()
        for name, function_name in commands.items():
            summary = (COMMANDS[name].__doc__ or name).strip().splitlines()[0]
            converter.write_file(
                folder / f"{name.replace('-', '_')}.py",
                "import sys",
                "from django.core.management.base import BaseCommand",
                f"from ...commands import {function_name}",
                "class Command(BaseCommand):",
                f"    help = {summary!r}",
                "    def run_from_argv(self, argv):  # the command parses its own arguments, as in linkblog.py",
                f"        sys.exit({function_name}(argv[2:]) or 0)",
            )

    @staticmethod
    def write_module(converter, module_name, names, preamble="", statements=()):
        """Write app/MODULE_NAME.py with these top-level definitions (and statements), and whatever
        they reference."""
        from nanodjango.convert.converter import Resolver
        from nanodjango.convert.utils import collect_references

        resolver = Resolver(converter, f".{module_name}")
        sources = []
        for name in names:
            source, references = converter.collect_definition(name)
            sources.append(source)
            resolver.add(name, references)
        for statement in statements:
            sources.append(ast.unparse(statement))
            resolver.add_references(collect_references(statement))
        converter.write_file(converter.app_path / f"{module_name}.py", preamble, resolver.gen_src(), "\n\n".join(sources))

    @hookimpl
    def convert_build_app_unused(self, converter, resolver, extra_src):
        """What no page, model or admin uses (the search index's SQL, which the migration reaches
        through the app's models module) goes to models.py: in the single file, the models module
        is the whole file."""
        leftovers = set(vars(converter.module)) - converter.used - set(converter.imports)
        leftovers = [name for name in leftovers if not name.startswith("_") and name != converter.app._instance_name]
        if not leftovers:
            return
        models_py = converter.app_path / "models.py"
        existing = models_py.read_text()
        self.write_module(converter, "models", leftovers)
        models_py.write_text(existing + "\n\n" + models_py.read_text())
        extra_src.append("# moved to models.py")  # the converter writes no unused.py when a hook adds source

    @hookimpl
    def convert_build_end(self, converter):
        """Definitions copied into a module come before the models and views that they may reference
        at import time (`POST_MODELS = {"entry": Entry, ...}`): put each module back in this file's order."""
        positions = self.original_positions(converter)
        for path in [*converter.app_path.glob("*.py"), *converter.app_path.glob("templatetags/*.py")]:
            tree = ast.parse(path.read_text())
            imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            if path.name == "models.py":  # leftovers written there import its own names: drop those
                imports = [node for node in imports if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "models")]
            if path.parent.name == "templatetags":  # `from .models import X` is one level up from there
                for node in imports:
                    if isinstance(node, ast.ImportFrom) and node.level == 1:
                        node.level = 2
            others = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
            others.sort(key=lambda node: positions.get(self.defined_name(node), -1))
            converter.write_file(path, ast.unparse(ast.Module(body=imports + others, type_ignores=[])))


app.pm.register(ConvertPlugin())


# --- Entry point: `python linkblog.py run` works like `nanodjango run linkblog.py` ----------

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
