"""
linkblog: a personal link blog in one nanodjango file.

Three kinds of post (entries, blogmarks and quotations), all tagged, mixed
together on the home page and on every tag page, newest first.

Read it top to bottom: settings, models, Markdown, admin, pages, then the
entry point. Templates live in templates/, the stylesheet in static/.

    nanodjango run linkblog.py          # development server, migrates first
"""

import os
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone
from html.parser import HTMLParser
from pathlib import Path

import dj_database_url
import markdown
import nh3
from nanodjango import Django

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
        config["CONN_MAX_AGE"] = 60
        config["CONN_HEALTH_CHECKS"] = True
    return config


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", INSECURE_SECRET_KEY)
if not DEBUG and SECRET_KEY == INSECURE_SECRET_KEY:
    sys.exit(
        "linkblog: refusing to start with DJANGO_DEBUG off and no DJANGO_SECRET_KEY. "
        'Set one, e.g. DJANGO_SECRET_KEY="$(python -c \'import secrets; print(secrets.token_urlsafe(50))\')"'
    )

app = Django(
    DEBUG=DEBUG,
    SECRET_KEY=SECRET_KEY,
    ALLOWED_HOSTS=env_list("DJANGO_ALLOWED_HOSTS", ["*"] if DEBUG else ["localhost", "127.0.0.1"]),
    CSRF_TRUSTED_ORIGINS=env_list("CSRF_TRUSTED_ORIGINS", []),
    DATABASES={"default": database_settings()},
    ADMIN_URL="admin/",
    FORMS_URLFIELD_ASSUME_HTTPS=True,
    EXTRA_APPS=["django.contrib.humanize"],
    TIME_ZONE="UTC",
    LINKBLOG_TITLE=os.environ.get("LINKBLOG_TITLE", "linkblog"),
    LINKBLOG_AUTHOR=os.environ.get("LINKBLOG_AUTHOR", "The author"),
    LINKBLOG_BASE_URL=os.environ.get("LINKBLOG_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
    LINKBLOG_PAGE_SIZE=30,
)

from django.apps import apps as django_apps  # noqa: E402  (configured by Django() above)
from django.conf import settings  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator  # noqa: E402
from django.db import models  # noqa: E402
from django.db.models import Count, OuterRef, Q, Subquery, Value  # noqa: E402
from django.db.models.functions import Coalesce  # noqa: E402
from django.db.models.signals import m2m_changed, post_delete, post_save  # noqa: E402
from django.dispatch import Signal  # noqa: E402
from django.http import Http404  # noqa: E402
from django.shortcuts import get_object_or_404, render  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.html import strip_tags  # noqa: E402
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


def render_markdown(text):
    """Markdown to HTML that is safe to show: no scripts, event handlers or javascript: URLs."""
    html = markdown.markdown(text or "", extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return nh3.clean(
        html,
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
        return reverse("tag_page", args=[self.tag])



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
        return reverse(
            "permalink",
            args=[created.year, MONTHS[created.month - 1], created.day, self.slug],
        )

    def render(self):
        """Store everything pages show, so that a page view never runs Markdown."""
        self.html = render_markdown(getattr(self, self.markdown_field))

    def same_day_posts(self, model):
        """Posts of `model` on this post's (UTC) day, other than this one."""
        start = self.created.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        posts = model.objects.filter(created__gte=start, created__lt=start + timedelta(days=1))
        if model is type(self) and self.pk:
            posts = posts.exclude(pk=self.pk)
        return posts

    def make_unique_slug(self):
        """A slug from the title that no post of any kind uses on the same day."""
        base = slugify(getattr(self, self.slug_source_field) or "")[:56].strip("-") or self.kind
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

    def render(self):
        super().render()
        self.excerpt_html = first_block(self.html)
        self.word_count = len(plain_text(self.html).split())

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
    return rows[0].union(*rows[1:], all=True).order_by("-created", "-pk")


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


def paginate(request, queryset):
    """The requested page of a queryset; a missing, malformed or out-of-range page is a 404."""
    paginator = Paginator(queryset, settings.LINKBLOG_PAGE_SIZE)
    try:
        return paginator.page(request.GET.get("page", 1))
    except (PageNotAnInteger, EmptyPage):
        raise Http404("No such page")


def posts_page(request, querysets):
    """A page of mixed posts, with the post objects loaded in order."""
    page = paginate(request, mixed_posts(querysets))
    page.object_list = load_posts(page.object_list)
    return page


@app.route("/", name="home")
def home(request):
    page = posts_page(request, {kind: published(model) for kind, model in POST_MODELS.items()})
    return render(request, "home.html", {"page": page})


@app.route("/tags/", name="tag_list")
def tag_list(request):
    tags = tags_with_counts().filter(post_count__gt=0).order_by("tag")
    return render(request, "tags.html", {"tags": tags})


@app.route("/tags/<slug:tag>/", name="tag_page")
def tag_page(request, tag):
    tag = get_object_or_404(Tag, tag=tag)
    page = posts_page(request, {kind: published(model).filter(tags=tag) for kind, model in POST_MODELS.items()})
    return render(request, "tag.html", {"tag": tag, "page": page})


def day_range(year, month, day):
    """The UTC start and end of a day named in a URL, or 404 if there is no such day."""
    if month not in MONTHS:
        raise Http404("No such month")
    try:
        start = datetime(year, MONTHS.index(month) + 1, day, tzinfo=dt_timezone.utc)
    except ValueError:
        raise Http404("No such day")
    return start, start + timedelta(days=1)


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


# --- Serving: Django's WSGI handler, built once per worker process ---------------------------


def wsgi_application():
    """The production handler: `gunicorn 'linkblog:wsgi_application()'` builds it once per worker.

    (nanodjango's own `app.wsgi` rebuilds Django's handler on every request.)
    """
    from django.core.wsgi import get_wsgi_application

    app._prepare()
    return get_wsgi_application()


# --- Commands: `python linkblog.py NAME ...` for our own commands, nanodjango's for the rest ------

COMMANDS = {}


def command(function):
    """Register `function(args)` as `python linkblog.py NAME ARGS...`, NAME being its name without `_command`."""
    COMMANDS[function.__name__.removesuffix("_command").replace("_", "-")] = function
    return function


def main(argv):
    """Run one of our commands, or hand the arguments to nanodjango (`run`, `manage`, `serve`, ...)."""
    if argv and argv[0] in COMMANDS:
        app._prepare()
        return COMMANDS[argv[0]](argv[1:])
    app.invoke(default="run 127.0.0.1:8000")


# --- Entry point: `python linkblog.py run` works like `nanodjango run linkblog.py` ----------

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
