"""The importer: records from any format (formats.py) validated and written in bulk, all or nothing.

One transaction per import; a bad record (without `skip_bad`) means nothing at all is written.
Existing posts are matched without a query per line: by (kind, UTC day, slug), or without a slug by
each kind's `natural_key_fields`. Markdown is rendered by the kinds' own `rendered()`, on every core
from the command line (`rendering_processes`). Validation is the models' own: each field's clean()
(its length and validators, blogworks/rules.py), `Tag.clean_name`, `LAST_DAY`, and no two posts of
any kinds on one permalink; none of it asks the database. The models come in as arguments.
"""

import ctypes
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from functools import partial
from itertools import islice

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from .formats import BadRecord, NotALink, detect_format, read_feed, read_ndjson, read_netscape, read_pinboard
from .search_index import IndexedKind, SearchIndexBatch
from .signals import posts_changed
from .text import render_markdown

COMMON_KEYS = {"type", "slug", "created", "tags", "is_draft"}
TAG_KEYS = {"type", "tag", "description"}
IMPORT_BATCH = 1000


@dataclass
class Incoming:
    """A validated post from an import file: only the keys the file gave are set."""

    kind: str
    where: str
    fields: dict
    slug: str = ""
    created: datetime | None = None  # the import's time when the file gives none (created_given False)
    created_given: bool = False
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

    kinds: tuple = ("tag",)  # "tag" and every kind of post, in the order the summary lists them

    OUTCOMES = ("created", "updated", "unchanged", "skipped")

    def rows(self):
        """(kind, [count per outcome]) for every kind the import touched."""
        kinds = [kind for kind in self.kinds if any(self.counts[kind, outcome] for outcome in self.OUTCOMES)]
        if self.counts["other", "skipped"]:
            kinds.append("other")
        return [(kind, [self.counts[kind, outcome] for outcome in self.OUTCOMES]) for kind in kinds]

    def unknown_key_counts(self):
        """[(key, how often)], most frequent first: for the summary."""
        return self.unknown_keys.most_common()

    @property
    def changed(self):
        return any(self.counts[kind, outcome] for kind in self.kinds for outcome in ("created", "updated"))


# Validating: one record of the file against the model's rules


def clean_record(record, report, now, models, tag_model, foreign=False):
    """A tag as (name, description), or an Incoming post; BadRecord says what is wrong.

    `models` are the kinds of post by name. With `foreign` (bookmarks, Pinboard, feeds) tags are
    other services' names, made into slugs."""
    kind = record.get("type")
    if kind is None:
        raise BadRecord('has no "type" (tag, entry, blogmark or quotation)')
    if kind == "tag":
        report.unknown_keys.update(key for key in record if key not in TAG_KEYS)
        name = clean_tag_name(record.get("tag"), tag_model)
        return name, clean_text(record, "description", tag_model, required=False)
    if not isinstance(kind, str) or kind not in models:  # a list or an object is no type either
        expected = ", ".join(["tag", *models])
        raise BadRecord(f"has an unknown type {json.dumps(kind)[:40]} (expected {expected})")
    model = models[kind]
    report.unknown_keys.update(key for key in record if key not in COMMON_KEYS and key not in model.export_fields)
    post = Incoming(kind=kind, where="", fields={})
    for name in model.export_fields:
        required = not model._meta.get_field(name).blank
        if name in record or required:
            post.fields[name] = clean_text(record, name, model, required=required)
    post.slug = clean_slug(record.get("slug"))
    post.created_given = record.get("created") is not None
    post.created = clean_created(record["created"], model.LAST_DAY) if post.created_given else now
    if "tags" in record:
        post.tags, post.left_out_tags = (slugified_tags(record["tags"]) if foreign
                                         else (clean_tags(record["tags"], tag_model), []))
    if "is_draft" in record:
        if not isinstance(record["is_draft"], bool):
            raise BadRecord("has an is_draft that is not true or false")
        post.is_draft = record["is_draft"]
    return post


def clean_text(record, name, model, required):
    """The field's value as the model's field cleans it (a link percent-encoded), as the admin and the API do."""
    value = record.get(name)
    if value is None or value == "":
        if required:
            raise BadRecord(f"has no {name} (required)")
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"has a {name} that is not text")
    try:
        return model._meta.get_field(name).clean(value, None)
    except ValidationError as error:
        raise BadRecord(f"has a bad {name}: {' '.join(error.messages)}")


def refuse_lone_surrogates(record):
    """BadRecord if any text of a record, keys included, holds a lone surrogate (a JSON "\\ud800"):
    such text is not Unicode, so it can be neither stored nor printed in a message."""
    try:
        json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")  # one quick pass over all of it
    except UnicodeEncodeError as error:
        raise BadRecord(f"has a lone surrogate (\\u{ord(error.object[error.start]):04x}) in its text, which is not Unicode")


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


def clean_created(value, last_day):
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
    except OverflowError:  # past either end of datetime's range once in UTC
        if moment.year == 1:
            raise BadRecord(f"has a created date before the year 1 in UTC: “{value}”")
        moment = last_day
    if moment >= last_day:
        raise BadRecord(f"has a created date past the end of 9999-12-30 UTC (a post needs a day after it): “{value}”")
    return moment


def clean_tags(value, tag_model):
    if not isinstance(value, list):
        raise BadRecord("has tags that are not a list")
    return list(dict.fromkeys(clean_tag_name(name, tag_model) for name in value))


def slugified_tags(names):
    """Other services' tags (“Web Dev”, “C++”) as our slugs, and the names no slug can be made from."""
    slugs = {name: slugify(name)[:64] for name in names if name.strip()}
    return list(dict.fromkeys(slug for slug in slugs.values() if slug)), [name for name, slug in slugs.items() if not slug]


def clean_tag_name(value, tag_model):
    """The model's rule for a tag name, its refusal as a BadRecord."""
    try:
        return tag_model.clean_name(value)
    except ValidationError as error:
        raise BadRecord(f"has a tag that is {error.messages[0]}")


# Writing: tags and posts in bulk, one transaction, existing posts matched without a query per line


def utc_day(moment):
    return moment.astimezone(dt_timezone.utc).date()


@dataclass
class Pending:
    """A post this import creates, found again by a later line of the same file."""

    where: str


def natural_key(model, created, values):
    """What finds a post given without a slug: its kind's `natural_key_fields` (a digest of each, to
    keep the index of a big blog small), on its UTC day unless the kind says any day will do."""
    day = utc_day(created) if model.natural_key_per_day else None
    return (model.kind, day, *(hashlib.blake2b(value.encode(), digest_size=16).digest() for value in values))


class PostIndex:
    """Every existing post's identity, loaded once: (kind, UTC day, slug) and its natural key."""

    def __init__(self, models):
        self.models, self.by_slug, self.by_natural_key = models, {}, {}
        for kind, model in models.items():
            rows = model.objects.order_by("created", "pk").values_list("pk", "created", "slug", *model.natural_key_fields)
            for pk, created, slug, *values in rows.iterator(5000):
                self.by_slug[kind, utc_day(created), slug] = pk
                self.by_natural_key.setdefault(natural_key(model, created, values), pk)

    def natural_key(self, post):
        model = self.models[post.kind]
        return natural_key(model, post.created, [post.fields[name] for name in model.natural_key_fields])

    def find(self, post):
        """The id (or Pending) of the post this record is, or None for a new post."""
        if post.slug:
            return self.by_slug.get((post.kind, utc_day(post.created), post.slug))
        return self.by_natural_key.get(self.natural_key(post))

    def other_kind_on_permalink(self, post):
        """What already has this post's permalink (its day and slug) as another kind: "an existing
        blogmark", "the blogmark on line 3", or None."""
        day = utc_day(post.created)
        for kind in self.models:
            found = self.by_slug.get((kind, day, post.slug)) if kind != post.kind and post.slug else None
            if found is not None:
                return f"the {kind} on {found.where}" if isinstance(found, Pending) else f"an existing {kind}"
        return None

    def new_slug(self, post, model_post):
        """The slug a new post gets: its own, or one made from its title, unique on its day across kinds."""
        if post.slug:
            return post.slug
        day = utc_day(post.created)
        return model_post.first_free_slug(model_post.slug_base(), lambda slug: any((kind, day, slug) in self.by_slug for kind in self.models))

    def add(self, post, slug, where):
        pending = Pending(where)
        self.by_slug[post.kind, utc_day(post.created), slug] = pending
        self.by_natural_key.setdefault(self.natural_key(post), pending)


@dataclass
class PreparedPosts:
    """One chunk's posts, sorted and being rendered: what Importer.write_posts() writes."""

    new: dict  # kind -> [(model object, Incoming)]
    changes: dict  # kind -> ([changed model object], [(pk, tags)])
    to_render: list  # the model objects whose Markdown is being rendered, in order
    rendered: object  # an iterator of their rendered fields


class Importer:
    """Reads records, validates them, and writes them in bulk inside ONE transaction."""

    def __init__(self, models, tag_model, skip_bad=False, dry_run=False, foreign=False, render_map=map,
                 authorize=None, after_writing=None):
        self.models, self.tag_model = models, tag_model
        # Called once, before the commit, with {kind: pks} of every post written: bulk writes send no
        # signals, so what the site keeps from posts (listings, link rows) is brought in step there.
        self.after_writing = after_writing
        self.written = defaultdict(set)
        self.authorize = authorize  # called with the report before committing: raising rolls it all back
        # `foreign`: the file comes from another service (bookmarks, Pinboard, a feed), whose tags are
        # made into slugs and whose private flag decides only a new blogmark's draft state.
        self.skip_bad, self.foreign = skip_bad, foreign
        self.report = ImportReport(dry_run=dry_run, kinds=("tag", *models))
        _renderers.update(renderers_of(models))
        self.render_map = render_map  # map, or a pool's map that renders in other processes
        self.now = timezone.now().replace(microsecond=0)
        self.seen_existing = {}  # (kind, pk) -> where it was first seen in this file
        self.declared_tags = {}  # tag name -> where this file declared it

    def run(self, records):
        """Import every record; on a bad record (without --skip-bad) nothing at all is written."""
        with transaction.atomic():
            self.tags = dict(self.tag_model.objects.values_list("tag", "pk"))
            self.tag_descriptions = dict(self.tag_model.objects.values_list("tag", "description"))
            self.index = PostIndex(self.models)
            self.search_index = SearchIndexBatch(connection, [IndexedKind.of(model) for model in self.models.values()])
            # One chunk's Markdown renders (in the rendering processes) while the one before it is written.
            rendering = None
            while chunk := list(islice(records, IMPORT_BATCH)):
                prepared = self.import_chunk(chunk)
                self.write_posts(rendering)
                rendering = prepared
            self.write_posts(rendering)
            self.report.failed = bool(self.report.problems) and not self.skip_bad
            if self.authorize and not self.report.failed:
                self.authorize(self.report)  # only now is it known which kinds the file creates and updates
            if self.report.failed or self.report.dry_run:
                transaction.set_rollback(True)  # which also puts the search index triggers back
            else:
                self.search_index.finish()
                if self.after_writing and self.written:
                    self.after_writing(self.written)
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
            return None  # the import will be rolled back: only keep finding problems
        self.write_tags(tags, posts)
        return self.prepare_posts(posts)

    def clean(self, record):
        if isinstance(record, BadRecord):
            raise record
        refuse_lone_surrogates(record)
        return clean_record(record, self.report, self.now, self.models, self.tag_model, self.foreign)

    def refuse(self, where, record, problem):
        kind = record.get("type") if isinstance(record, dict) else None
        kind = "blogmark" if isinstance(problem, NotALink) else kind
        self.report.counts[kind if kind in self.report.kinds else "other", "skipped"] += 1
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
                new[name] = self.tag_model(tag=name, description=description, description_html=render_markdown(description))
            elif self.tag_descriptions[name] != description:
                changed.append(name)
                self.tag_descriptions[name] = description
            else:
                self.report.counts["tag", "unchanged"] += 1
        for post in posts:
            for name in post.tags or ():
                if name not in self.tags and name not in new:
                    new[name] = self.tag_model(tag=name)
        self.tag_model.objects.bulk_create(new.values())
        for tag in new.values():
            self.tags[tag.tag], self.tag_descriptions[tag.tag] = tag.pk, tag.description
        updated = [self.tag_model(pk=self.tags[name], tag=name, description=self.tag_descriptions[name],
                       description_html=render_markdown(self.tag_descriptions[name])) for name in changed]
        self.tag_model.objects.bulk_update(updated, ["description", "description_html"])
        self.report.counts["tag", "created"] += len(new)
        self.report.counts["tag", "updated"] += len(changed)

    def note_duplicate(self, kind, where, message):
        self.report.counts[kind, "skipped"] += 1
        self.report.skipped.append((where, message))

    # Posts

    def prepare_posts(self, posts):
        """Sort the chunk's posts into new ones, changes and duplicates, and start rendering the
        Markdown of the new and changed ones: write_posts() writes them once it is rendered."""
        matches = {kind: {} for kind in self.models}  # kind -> {pk: Incoming}
        new = {kind: [] for kind in self.models}  # kind -> [(model object, Incoming)]
        for post in posts:
            model_post = self.models[post.kind](**post.fields)
            found = self.index.find(post)
            if isinstance(found, Pending) or (post.kind, found) in self.seen_existing:
                first = found.where if isinstance(found, Pending) else self.seen_existing[post.kind, found]
                self.note_duplicate(post.kind, post.where, f"is the same {post.kind} as {first}, left out")
            elif found is None and (other := self.index.other_kind_on_permalink(post)):
                self.refuse(post.where, {"type": post.kind}, BadRecord(
                    f"has the slug “{post.slug}” of {other} on the same day: two posts cannot share a permalink"))
            elif found is None:
                model_post.slug = self.index.new_slug(post, model_post)
                model_post.created, model_post.is_draft = post.created, bool(post.is_draft)
                self.index.add(post, model_post.slug, post.where)
                new[post.kind].append((model_post, post))
            else:
                self.seen_existing[post.kind, found] = post.where
                matches[post.kind][found] = post
        changes = {kind: self.changes(model, matches[kind]) for kind, model in self.models.items()}
        to_render = [model_post for kind in self.models for model_post, _ in new[kind]]
        to_render += [model_post for changed, _ in changes.values() for model_post in changed]
        return PreparedPosts(new, changes, to_render, self.render(to_render))

    def render(self, model_posts):
        """The rendered fields of the posts' Markdown, in order: an iterator that a pool of processes
        fills meanwhile (`map` renders as it is read)."""
        return self.render_map(render_for_import, [(post.kind, getattr(post, post.markdown_field)) for post in model_posts])

    def write_posts(self, prepared):
        """Write what prepare_posts() found, once its Markdown is rendered."""
        if prepared is None:
            return
        for model_post, fields in zip(prepared.to_render, prepared.rendered):
            for name, value in fields.items():
                setattr(model_post, name, value)
        for kind, model in self.models.items():
            self.create_posts(model, prepared.new[kind])
            self.write_changes(model, *prepared.changes[kind])

    def create_posts(self, model, pairs):
        model.objects.bulk_create([model_post for model_post, _ in pairs])
        self.link_tags(model, [(model_post.pk, post.tags or []) for model_post, post in pairs])
        self.search_index.wrote(model.kind, [model_post.pk for model_post, _ in pairs])
        self.written[model.kind].update(model_post.pk for model_post, _ in pairs)
        self.report.counts[model.kind, "created"] += len(pairs)

    def link_tags(self, model, tags_by_post):
        through, column = model.tags.through, f"{model.kind}_id"
        links = [through(**{column: pk, "tag_id": self.tags[name]}) for pk, names in tags_by_post for name in names]
        through.objects.bulk_create(links)

    def changes(self, model, posts_by_pk):
        """([changed post], [(pk, tags)]): the records' changes applied to their existing posts (not
        yet saved); a post whose record matches it stays untouched."""
        if not posts_by_pk:
            return [], []
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
        return changed, retagged

    def write_changes(self, model, changed, retagged):
        if not (changed or retagged):
            return
        column = f"{model.kind}_id"
        model.objects.bulk_update(changed, [*model.export_fields, "created", "is_draft", *self.rendered_fields(model)])
        model.tags.through.objects.filter(**{f"{column}__in": [pk for pk, _ in retagged]}).delete()
        self.link_tags(model, retagged)
        self.search_index.wrote(model.kind, [post.pk for post in changed] + [pk for pk, _ in retagged])
        self.written[model.kind].update([post.pk for post in changed] + [pk for pk, _ in retagged])

    @staticmethod
    def rendered_fields(model):
        return [field.name for field in model._meta.concrete_fields if not field.editable and not field.primary_key]

    def apply_changes(self, model_post, post):
        """Copy the record's values onto the post; True when any differed. Changed content dates the
        edit (`updated`), as a save in the admin or the API does (StoredContent.note_edit).

        Another service's file never publishes a draft nor hides a post: a private or shared flag
        there says nothing about what the author decided here."""
        values = dict(post.fields)
        if post.slug and post.created_given:  # matched by its day and slug: the time of day may change too
            values["created"] = post.created
        if post.is_draft is not None and not self.foreign:
            values["is_draft"] = post.is_draft
        changed = {name: value for name, value in values.items() if getattr(model_post, name) != value}
        for name, value in changed.items():
            setattr(model_post, name, value)
        if changed.keys() & post.fields.keys():  # its content, not only its date or draft state
            model_post.updated = self.now
        return bool(changed)


_renderers = {}  # kind -> its model's rendered(): set in this process, and in each rendering process


def renderers_of(models):
    return {kind: model.rendered for kind, model in models.items()}


def render_for_import(kind_and_text):
    """What a post of this kind stores from this Markdown: a task for a rendering process."""
    kind, text = kind_and_text
    return _renderers[kind](text)


def start_rendering_process(renderers, parent):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's, which rolls back
    # SIGTERM ends this process (the pool itself uses it on the others when one dies), not the
    # importing process's handler inherited through fork.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with(parent)
    _renderers.update(renderers)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with(parent):
    """End this process when `parent` ends, however it ends (SIGKILL leaves it no time to stop us):
    an orphaned renderer would otherwise wait for work for ever, holding memory and the terminal."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the kernel kills us
    else:
        threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it ended before we asked: we were already handed to init
        os._exit(1)


def watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


@contextmanager
def rendering_processes(processes, models):
    """A map() that renders Markdown on every core, for imports from the command line.

    Rendering is most of an import's work, and one process uses one core. The workers are forked, so
    they start with everything loaded; they never touch the database. Not for the web server's
    processes, which may have threads. Ctrl-C is left to the importing process, which rolls back;
    the workers end with it, even when it is killed.
    """
    if processes < 2:
        yield map
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=start_rendering_process,
                               initargs=(renderers_of(models), os.getpid()))
    try:
        yield partial(pool.map, chunksize=25)
    finally:
        pool.shutdown(cancel_futures=True)


class Progress:
    """A progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, stream=None, total_bytes=0, label="importing"):
        self.stream = stream if stream is not None and stream.isatty() else None
        self.total_bytes, self.shown_at, self.label = total_bytes, 0.0, label

    def update(self, source):
        if self.stream and self.total_bytes:
            self.show(source.tell() / self.total_bytes)

    def done(self, count, total):
        """`count` of `total` things done (as LinkChecker's on_progress says)."""
        if self.stream and total:
            self.show(count / total)

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
        self.stream.write(f"\r{self.label} [{'#' * done}{' ' * (30 - done)}] {fraction:4.0%}")
        self.stream.flush()

    def finish(self):
        if self.stream and self.shown_at:
            self.stream.write("\r" + " " * (len(self.label) + 40) + "\r")
            self.stream.flush()


def import_file(stream, models, tag_model, format=None, skip_bad=False, dry_run=False, folders_as_tags=False,
                progress=None, render_map=map, authorize=None, after_writing=None):
    """Import a binary file object (NDJSON is read line by line); returns an ImportReport.

    `authorize(report)`, when given, sees what the import would do before it is committed; whatever it
    raises (e.g. a missing permission) rolls the import back and reaches the caller."""
    progress = progress or Progress()
    format = format or detect_format(stream)
    readers = {
        "ndjson": lambda: read_ndjson(stream, progress),
        "netscape": lambda: read_netscape(stream, progress, folders_as_tags),
        "pinboard": lambda: read_pinboard(stream, progress),
        "feed": lambda: read_feed(stream, progress),
    }
    try:
        importer = Importer(models, tag_model, skip_bad=skip_bad, dry_run=dry_run, foreign=format != "ndjson",
                            render_map=render_map, authorize=authorize, after_writing=after_writing)
        return importer.run(readers[format]())
    finally:
        progress.finish()
