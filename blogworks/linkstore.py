"""Links in the database (issue 16): which posts hold which URLs, each URL's check history and state,
and the runs of `python linkblog.py check-links`. Checking itself is linkcheck's; this module stores it.

Models come in as arguments (this package never imports linkblog):
- `link_model`: one row per distinct URL (`url`, `url_hash`, `state`, `final_url`, `archived_url`,
  `last_checked`, `fine_since`), made with `link_model.for_url(url)`, found by `link_model.hash(url)`;
  `link_model.objects.held()` are those some post holds (a link no post holds any more keeps its
  history, in case a post links to it again, but is no longer checked);
- `post_link_model`: which post holds which link (`kind`, `post_id`, `link`, `position`);
- `check_model`: one row per URL per run (what a LinkResult says), `run_model`: the runs.

Pages never check anything: they read states with `attach_links`, one query per page.
"""

import hashlib
import re
from collections import Counter, defaultdict
from datetime import timedelta
from urllib.parse import urlsplit

from django.apps import apps
from django.db import transaction
from django.db.models import Q

from .linkcheck import Hop, LinkResult, classify_history, extract_links
from .signals import links_changed

WEB_URL = re.compile(r"https?://", re.IGNORECASE)  # the links worth checking and archiving

CHUNK = 1000  # ids per IN (...) query: SQLite (32766 parameters since 3.32) and PostgreSQL take it comfortably
RESUME_WITHIN = timedelta(days=1)  # an interrupted run older than this is left, and a new one starts
HISTORY = timedelta(days=365)  # the checks classification reads: death is decided over weeks, not years


def chunks(items, size=CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- Which posts hold which links ------------------------------------------------------------


def link_ids(link_model, urls):
    """{url: Link id} for `urls`, creating the Links not yet known (in bulk; a concurrent writer
    creating the same URL is no error)."""
    by_hash = {link_model.hash(url): url for url in urls}
    found = {}
    for hashes in chunks(by_hash):
        found.update(link_model.objects.filter(url_hash__in=hashes).values_list("url_hash", "pk"))
    missing = [link_model.for_url(url) for url_hash, url in by_hash.items() if url_hash not in found]
    link_model.objects.bulk_create(missing, batch_size=CHUNK, ignore_conflicts=True)
    for hashes in chunks(link.url_hash for link in missing):
        found.update(link_model.objects.filter(url_hash__in=hashes).values_list("url_hash", "pk"))
    return {url: found[url_hash] for url_hash, url in by_hash.items()}


def existing_post_links(post_link_model, posts):
    """{(kind, post_id, link_id): (row id, position)} of the posts named as (kind, post_id)."""
    ids_by_kind = defaultdict(list)
    for kind, post_id in posts:
        ids_by_kind[kind].append(post_id)
    existing = {}
    for kind, ids in ids_by_kind.items():
        for some in chunks(ids):
            rows = post_link_model.objects.filter(kind=kind, post_id__in=some)
            for row_id, post_id, link_id, position in rows.values_list("pk", "post_id", "link_id", "position"):
                existing[kind, post_id, link_id] = (row_id, position)
    return existing


def set_post_links(link_model, post_link_model, links_by_post):
    """Make the rows of each post in `links_by_post` ({(kind, post_id): [url, ...]}) say exactly
    those URLs, in order, touching only rows that change."""
    ids = link_ids(link_model, {url: None for urls in links_by_post.values() for url in urls})
    wanted = {(kind, post_id, ids[url]): position
              for (kind, post_id), urls in links_by_post.items() for position, url in enumerate(urls)}
    existing = existing_post_links(post_link_model, links_by_post)
    stale = [row_id for key, (row_id, position) in existing.items() if wanted.get(key) != position]
    new = [post_link_model(kind=key[0], post_id=key[1], link_id=key[2], position=position)
           for key, position in wanted.items() if existing.get(key, (0, None))[1] != position]
    with transaction.atomic():
        for some in chunks(stale):
            post_link_model.objects.filter(pk__in=some).delete()
        post_link_model.objects.bulk_create(new, batch_size=CHUNK)


def links_of(posts):
    """{(kind, pk): [url, ...]} of a queryset of one kind's posts, reading only what links come from."""
    model = posts.model
    posts = posts.order_by().only(*model.link_fields, model.markdown_field)
    return {(model.kind, post.pk): post.links() for post in posts.iterator(chunk_size=2000)}


def refresh_post_links(post_models, link_model, post_link_model, ids_by_kind):
    """Bring the link rows of these posts ({kind: pks}) in step, after a bulk write that sent no signals
    (an import): writes only for what changed."""
    links_by_post = {}
    for kind, ids in ids_by_kind.items():
        for some in chunks(ids):
            links_by_post.update(links_of(post_models[kind].objects.filter(pk__in=some)))
    set_post_links(link_model, post_link_model, links_by_post)


def refresh_all_post_links(post_models, link_model, post_link_model):
    """Bring every post's link rows in step at once (before a check run, which may follow writes
    made behind the site's back): one pass over the posts, writes only for what changed."""
    links_by_post = {}
    for model in post_models.values():
        links_by_post.update(links_of(model.objects.all()))
    with transaction.atomic():
        set_post_links(link_model, post_link_model, links_by_post)
        for kind, model in post_models.items():  # posts gone without a signal (a raw SQL delete)
            post_link_model.objects.filter(kind=kind).exclude(post_id__in=model.objects.values("pk")).delete()


class StoredUrl:
    """A Link row's URL: found by its hash (URLs can be longer than an index entry holds), grouped by host."""

    @staticmethod
    def hash(url):
        return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def for_url(cls, url):
        """A new (unsaved) Link: bulk writes skip save(), so the hash and host are set here."""
        try:
            host = (urlsplit(url).hostname or "")[:255]
        except ValueError:  # "http://[::1": still a link a post holds, checked as unreachable
            host = ""
        return cls(url=url, url_hash=cls.hash(url), host=host)


class LinkHolder:
    """What a post (a model with `kind`, `link_fields` and `markdown_field`) knows of its links: which
    they are, how to point them elsewhere, and their stored states (its app's PostLink rows)."""

    def links(self):
        """The http(s) URLs this post links to, once each: its link fields, then its Markdown's links."""
        urls = [getattr(self, name) for name in self.link_fields] + extract_links(getattr(self, self.markdown_field))
        return list(dict.fromkeys(url for url in urls if WEB_URL.match(url)))

    def replace_link(self, old_url, new_url):
        """Point this post's links to `old_url` at `new_url` instead (not saved)."""
        for name in self.link_fields:
            if getattr(self, name) == old_url:
                setattr(self, name, new_url)
        # Only the whole URL: where it ends a link in Markdown or HTML, not as the start of a longer one.
        whole_url = re.compile(re.escape(old_url) + r"""(?=[\s)>"'\]]|$)""")
        setattr(self, self.markdown_field, whole_url.sub(lambda match: new_url, getattr(self, self.markdown_field)))

    @property
    def known_links(self):
        """This post's Links (state, archived copy) from stored rows, loaded for a whole page by
        `attach_links()` (or here, for a single post)."""
        if not hasattr(self, "checked_links"):
            attach_links([self], apps.get_model(self._meta.app_label, "PostLink"))
        return self.checked_links

    def archived_copy(self, url):
        """Where readers find a copy of `url` when this post's link to it is dead, else ""."""
        return next((link.archived_url for link in self.known_links if link.url == url and link.state == "dead"), "")

    def dead_links_in_text(self):
        """Dead links of its Markdown (not its link fields) with an archived copy: shown under the text."""
        shown_beside = {getattr(self, name) for name in self.link_fields}
        return [link for link in self.known_links if link.state == "dead" and link.archived_url and link.url not in shown_beside]


def attach_links(posts, post_link_model):
    """Give each post `checked_links`: its Links in order. One query for all of them."""
    posts = list(posts)
    ids_by_kind = defaultdict(list)
    for post in posts:
        ids_by_kind[post.kind].append(post.pk)
    found = defaultdict(list)
    if posts:
        held = Q()
        for kind, ids in ids_by_kind.items():
            held |= Q(kind=kind, post_id__in=ids)
        for row in post_link_model.objects.filter(held).select_related("link").order_by("position", "pk"):
            found[row.kind, row.post_id].append(row.link)
    for post in posts:
        post.checked_links = found[post.kind, post.pk]
    return posts


# --- A run of checks -------------------------------------------------------------------------


def current_run(run_model, now):
    """The run interrupted less than a day ago (to resume it), else a new one; and whether resumed."""
    run = run_model.objects.filter(finished__isnull=True, started__gte=now - RESUME_WITHIN).order_by("-started").first()
    if run is not None:
        return run, True
    return run_model.objects.create(started=now), False


def checked_in(run, check_model):
    """The URLs this run has already checked: a resumed run skips them."""
    return set(check_model.objects.filter(run=run).values_list("link__url", flat=True))


def store_result(check_model, link_model, run, link_id, result):
    """Write one check as it comes, so Ctrl-C loses at most the checks in flight."""
    check_model.objects.create(
        link_id=link_id, run=run, checked_at=result.checked_at, status=result.status, outcome=result.outcome,
        final_url=result.final_url or "", permanent_redirect=result.permanent_redirect, error=result.error[:1000],
        redirects=[[hop.status, hop.url] for hop in result.redirects],
    )
    link_model.objects.filter(pk=link_id).update(last_checked=result.checked_at)


def result_of(url, row):
    """The LinkResult a stored check (a values() dict) recorded."""
    return LinkResult(url=url, status=row["status"], outcome=row["outcome"], final_url=row["final_url"] or None,
                      permanent_redirect=row["permanent_redirect"], checked_at=row["checked_at"], error=row["error"],
                      redirects=tuple(Hop(status, hop_url) for status, hop_url in row["redirects"] or ()))


def histories(check_model, now):
    """{link id: [LinkResult, ...] oldest first} over the last year up to `now`."""
    rows = (check_model.objects.filter(checked_at__gt=now - HISTORY, checked_at__lte=now)
            .order_by("link_id", "checked_at", "pk")
            .values("link_id", "link__url", "status", "outcome", "final_url", "permanent_redirect", "checked_at",
                    "error", "redirects"))
    found = defaultdict(list)
    for row in rows.iterator(chunk_size=2000):
        found[row["link_id"]].append(result_of(row["link__url"], row))
    return found


def classify_links(link_model, check_model, now, **rules):
    """Set every held link's state from its history as of `now` (classify_history with `rules`), counting
    only checks after the author marked it fine; a Counter of the states."""
    history, changed, states = histories(check_model, now), [], Counter()
    for link in link_model.objects.held().only("pk", "state", "final_url", "fine_since").iterator(chunk_size=2000):
        results = [result for result in history[link.pk] if not link.fine_since or result.checked_at > link.fine_since]
        state = classify_history(results, now, **rules)
        final_url = results[-1].final_url if state == "moved" else ""
        states[state] += 1
        if (state, final_url) != (link.state, link.final_url):
            link.state, link.final_url = state, final_url
            changed.append(link)
    link_model.objects.bulk_update(changed, ["state", "final_url"], batch_size=CHUNK)
    if changed:
        links_changed.send(sender=link_model, link_ids=[link.pk for link in changed])
    return states


def check_all_links(checker, models, on_progress=None, **rules):
    """One run: check every link not yet checked in the current run (resuming an interrupted one),
    storing each result as it comes, then classify every link, all as of `checker.clock()`. `models` = (link_model, check_model,
    run_model). Returns (resumed, Counter of states). Ctrl-C propagates, the run stays resumable."""
    link_model, check_model, run_model = models
    run, resumed = current_run(run_model, checker.clock())
    ids = dict(link_model.objects.held().order_by("pk").values_list("url", "pk"))
    checker.check(ids, skip=checked_in(run, check_model), on_progress=on_progress,
                  on_result=lambda result: store_result(check_model, link_model, run, ids[result.url], result))
    run_model.objects.filter(pk=run.pk).update(finished=checker.clock())
    return resumed, classify_links(link_model, check_model, checker.clock(), **rules)
