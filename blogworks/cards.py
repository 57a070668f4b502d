"""Listing cards: each post as listings show it (home, tag pages, archives), as feeds and /api/items
show it, as a search result and on its permalink, rendered once after it changes and stored, so
that a listing page joins thirty stored fragments instead of loading thirty posts with their tags
and links and running their templates.

What a card shows, and what therefore forgets it (the next page that lists the post renders it
again and stores it):
- the post's own fields: its save or delete (model signals, `loaddata`'s raw saves included);
- its tags: tags added, removed or cleared on either side (m2m_changed), a tag renamed (pre_save),
  deleted or merged into another (pre_delete: a merge deletes the old tag);
- its links' states, which give dead links their archived copies: `links_changed`, sent by whatever
  changes a Link's state or copy (the link checker, the archive job, the admin's "mark fine");
- writes in bulk that send no model signals (an import): `posts_changed` from any sender the site
  does not name as covered forgets every card: correct by default for a new kind of bulk write;
- the templates, settings and API schema it was rendered with: each card stores their digest, and a card whose
  digest is not the current one is rendered again when read and stored back. On read, not at
  startup or migrate: rendering 100,000 cards takes about a minute, which would hold up every
  deploy, while on read a page pays for at most its own thirty cards, once.

Forgetting deletes rows now and again after commit, and after commit also replaces a mark in the
shared cache (FORGOTTEN_KEY) before it deletes. A reader that rendered cards from rows read before a
commit either stored them before that second delete (which removes them) or finds, once it has
stored them, that the mark is no longer the one it read before loading the posts, and deletes them
itself: a card rendered across a write is never left behind. Which posts a page lists is always the listing query's
business (drafts and scheduled posts never reach it); a card is only ever read for the posts it names.
A draft's or a scheduled post's card (the API lists them to their authors) is rendered but never
stored: it says "Draft" or "Scheduled", and nothing would forget it when the moment comes.

Per-user parts stay out of the stored HTML: the card keeps a slot (EDIT_SLOT) where the Edit link
goes, filled for a user who may change the post and emptied for everyone else. So do the parts of a
search result that depend on the words searched: its stored HTML keeps slots for the highlighted
title and excerpt, and stores the plain title and text they are cut from. So do a permalink's replies
and mentions, which come and go without the post changing: its stored article keeps a slot for them.

Models come in as arguments (this package never imports linkblog): `card_model` has `kind`,
`post_id`, `digest` and the fields in STORED; posts are `{kind: model}`, each with a `tags`
many-to-many, and a post has `partial_template`, `feed_template`, `feed_title()` (plain text) and `html`.
"""

import hashlib
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import django
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import connections, transaction
from django.db.models import Q
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save
from django.template.loader import get_template, render_to_string
from django.template.loader_tags import IncludeNode
from django.utils.functional import cached_property
from django.utils.safestring import SafeString, mark_safe

from .database import field_converters, unless_busy
from .listing import group_ids, of_posts_sql, row_ids
from .permissions import may_change
from .signals import links_changed, posts_changed
from .text import NOT_IN_XML, excerpt, highlight, search_text

EDIT_SLOT = mark_safe("<!--edit-->")  # where a card's Edit link goes; never shown as it is
TITLE_SLOT = mark_safe("<!--title-->")  # where a search result's highlighted title goes
EXCERPT_SLOT = mark_safe("<!--excerpt-->")  # and its highlighted excerpt
RESPONSES_SLOT = mark_safe("<!--responses-->")  # where a permalink's replies and mentions go
FORGOTTEN_KEY = "cards-forgotten"  # replaced after every commit that forgets cards (see forget())
SEARCH_RESULT_TEMPLATE = "_search_result.html"
PERMALINK_HEAD_TEMPLATE = "_post_head.html"

# Settings a card's rendering reads (absolute URLs, dates, numbers): changing one renders cards again.
CARD_SETTINGS = ("LINKBLOG_BASE_URL", "LINKBLOG_TITLE", "TIME_ZONE", "LANGUAGE_CODE", "USE_THOUSAND_SEPARATOR")


# What a card row stores besides its key and digest: the listing's HTML, the post's <entry> in Atom
# feeds, its item in the API's lists (JSON), its search result and its permalink (JSON: see
# search_result and permalink; the permalink "" until its page first asks), and when the post last
# changed (the feed's <updated> is its newest entry's).
STORED = ("html", "feed_entry", "api_item", "search_result", "permalink", "last_modified")


@dataclass
class Card:
    """One post in a listing or feed: enough for a page's headings (`created`) and what is stored
    (only the parts the reader asked for: a page needs no Atom, a feed no HTML)."""

    kind: str
    pk: int
    created: datetime
    html: str = ""
    feed_entry: str = ""
    api_item: str = ""
    search_result: str = ""
    permalink: str = ""
    last_modified: datetime = None


# --- The digest of what cards are rendered with -------------------------------------------------

_digests = {}


def included_templates(template):
    """The templates `template` includes by a constant name ({% include "_x.html" %}), recursively."""
    names = []
    for node in template.template.nodelist.get_nodes_by_type(IncludeNode):
        name = node.template.var
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def template_sources(names):
    """{name: source} of the templates named and everything they include, as the loaders find them now."""
    sources, waiting = {}, list(names)
    while waiting:
        name = waiting.pop()
        if name not in sources:
            template = get_template(name)
            sources[name] = template.template.source
            waiting += included_templates(template)
    return sources


def current_digest(template_names, shapes=""):
    """The digest of the card templates (and what they include), of CARD_SETTINGS and of `shapes`
    (the API item's schema, as text). Kept per process (templates change with a deploy); recomputed
    on every call with DEBUG on, where the development server picks up edited templates, and after
    any setting changes (tests)."""
    key = (tuple(template_names), shapes)
    if key in _digests and not settings.DEBUG:
        return _digests[key]
    parts = sorted(template_sources(template_names).items())
    parts += [(name, repr(getattr(settings, name, None))) for name in CARD_SETTINGS]
    parts.append(("django", django.get_version()))  # its filters and feed writer shape cards too
    parts.append(("not in xml", NOT_IN_XML.pattern))  # what an Atom entry leaves out
    parts.append(("shapes", shapes))
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    _digests[key] = digest
    return digest


def forget_digests(**kwargs):
    _digests.clear()


setting_changed.connect(forget_digests, dispatch_uid="cards-forget-digests")


# --- Reading cards --------------------------------------------------------------------------------


def of_posts(ids_by_kind):
    """The Q of the cards of {kind: [post id, ...]}."""
    wanted = Q()
    for kind, ids in ids_by_kind.items():
        wanted |= Q(kind=kind, post_id__in=ids)
    return wanted


def stored_cards(card_model, rows, fields=STORED):
    """{(kind, post_id): (digest, {field: value})} of the stored cards of `rows` (the `fields` of STORED
    asked for): one query for every kind. (SQL of our own: every listing and permalink asks, and the
    ORM took a quarter of a millisecond to compile it, an eighth of a permalink.)"""
    ids_by_kind = row_ids(rows)
    if not ids_by_kind:
        return {}
    connection = connections[card_model.objects.db]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(card_model._meta.get_field(name).column) for name in ("kind", "post_id", "digest", *fields))
    wanted, params = of_posts_sql(ids_by_kind, quote)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {quote(card_model._meta.db_table)} WHERE {wanted}", params)
        found = cursor.fetchall()
    convert = field_converters(card_model, connection.alias, fields)
    return {(kind, post_id): (digest, {name: convert[name](value) for name, value in zip(fields, values)})
            for kind, post_id, digest, *values in found}


def store_cards(card_model, fields_by_post, digest):
    """Store freshly rendered cards. A bookkeeping write on a reader's request: when another writer
    holds the database it gives up at once (the next reader renders them again). True if stored."""
    cards = [card_model(kind=kind, post_id=post_id, digest=digest, **fields)
             for (kind, post_id), fields in sorted(fields_by_post.items())]  # one order: no deadlock between readers
    return unless_busy(lambda: card_model.objects.bulk_create(cards, update_conflicts=True, unique_fields=["kind", "post_id"],
                                                              update_fields=["digest", *STORED]))


def store_field(card_model, card, field, digest):
    """Store one more field of a card, if its row is still there and rendered with `digest` (else it
    was forgotten meanwhile, or rendered anew: the next reader renders the field again). Gives up as
    store_cards does when another writer holds the database. True if written."""
    return unless_busy(lambda: card_model.objects.filter(kind=card.kind, post_id=card.pk, digest=digest).update(**{field: getattr(card, field)}))


@contextmanager
def kept_unless_forgotten(card_model, ids_by_kind):
    """Around reading posts, rendering their cards and storing them: if a write committed meanwhile
    (the mark changed: see forget()), delete what was stored, which may show the posts before it.
    The body appends whether it stored: a store given up on a busy database left nothing to delete,
    and deleting would wait for that writer's lock, failing the reader's page."""
    mark, stored = cache.get(FORGOTTEN_KEY), []
    yield stored
    if any(stored) and cache.get(FORGOTTEN_KEY) != mark:
        delete_cards(card_model, ids_by_kind)


def listing_cards(rows, card_model, render, digest, fields=STORED):
    """The cards of a page of (kind, pk, created) rows, in order, with `fields` of STORED. Those missing
    or rendered with other templates or settings (another `digest`) are rendered now (`render(rows)`
    -> ({(kind, pk): {field: value}}, every field in STORED; the keys of posts readers cannot see yet))
    and stored, but for those posts: a draft's or scheduled post's card says so, and a scheduled post's
    moment coming is no write that could forget it."""
    stored = stored_cards(card_model, rows, fields)
    stale = [row for row in rows if stored.get((row["kind"], row["pk"]), ("", None))[0] != digest]
    if stale:
        with kept_unless_forgotten(card_model, row_ids(stale)) as stored_now:
            fresh, not_out = render(stale)
            stored_now.append(store_cards(card_model, {key: fields for key, fields in fresh.items() if key not in not_out}, digest))
        stored.update({key: (digest, fields) for key, fields in fresh.items()})
    return [Card(row["kind"], row["pk"], row["created"], **stored[row["kind"], row["pk"]][1]) for row in rows]


def fill_edit_slots(cards, edit_link):
    """Put each card's Edit link (`edit_link(card)`: HTML, or "" for a user who may not change it) in
    its slot. The slot is the card's last one: text before it (the post's) cannot forge it."""
    for card in cards:
        before, slot, after = card.html.rpartition(EDIT_SLOT)
        card.html = SafeString(before + edit_link(card) + after) if slot else SafeString(card.html)
    return cards


def readers_see(post):
    """Whether readers may see `post` now: neither a draft nor scheduled. Only such posts' cards are stored."""
    return not (post.is_draft or post.is_scheduled)


def search_result(post):
    """A post's stored search result, as JSON: its HTML with slots for the title and the excerpt (and
    the Edit link), and the plain title and text that fill_search_slots marks the searched words in."""
    html = render_to_string(SEARCH_RESULT_TEMPLATE, {"post": post, "edit_slot": EDIT_SLOT,
                                                     "title_slot": TITLE_SLOT, "excerpt_slot": EXCERPT_SLOT})
    return json.dumps({"html": html, "title": post.feed_title(), "text": search_text(post.html)})


def permalink(post):
    """A post's stored permalink, as JSON: its tags for the page's <head>, and its article (the kind's
    partial, whole) with slots for the Edit link and for the replies and mentions."""
    article = render_to_string(post.partial_template, {"post": post, "full": True, "edit_slot": EDIT_SLOT,
                                                       "responses_slot": RESPONSES_SLOT})
    return json.dumps({"head": render_to_string(PERMALINK_HEAD_TEMPLATE, {"post": post}), "article": article})


def fill_permalink_slots(card, edit_link, responses):
    """{"head", "article"} of a card's permalink, its Edit link (HTML, or "") and `responses` (HTML)
    in their slots. Both are the template's last, after every text of the post's: the Edit link's,
    then the responses'."""
    stored = json.loads(card.permalink)
    before, _, after = stored["article"].rpartition(EDIT_SLOT)
    before, _, after = (before + edit_link + after).rpartition(RESPONSES_SLOT)
    return {"head": SafeString(stored["head"]), "article": SafeString(before + responses + after)}


def fill_search_slots(cards, words):
    """Make each card's `html` its search result, with the title and an excerpt around the first of
    `words` put in their slots, the words marked. The slots come first in the template, before any
    text of the post's, so the first of each is the template's own (the post's text is escaped anyway)."""
    for card in cards:
        stored = json.loads(card.search_result)
        before, _, rest = stored["html"].partition(TITLE_SLOT)
        middle, _, after = rest.partition(EXCERPT_SLOT)
        card.html = "".join((before, highlight(stored["title"], words), middle,
                             highlight(excerpt(stored["text"], words), words), after))
    return cards


class CardStore:
    """One site's cards: `post_models` {kind: model}, each card rendered by its kind's partial and
    feed templates; `load_posts(rows)`: the posts behind rows, in order, ready to render;
    `feed_entry(post)`: its Atom <entry>; `api_item(post)`: its API item as JSON, and
    `api_shape()` that item's JSON schema (a card stored with another schema is rendered again)."""

    def __init__(self, card_model, post_models, load_posts, feed_entry, api_item, api_shape):
        self.card_model, self.post_models, self.load_posts = card_model, post_models, load_posts
        self.feed_entry, self.api_item, self.api_shape = feed_entry, api_item, api_shape
        self.template_names = [SEARCH_RESULT_TEMPLATE, PERMALINK_HEAD_TEMPLATE]
        self.template_names += [name for model in post_models.values() for name in (model().partial_template, model().feed_template)]

    @cached_property
    def shape(self):
        return json.dumps(self.api_shape(), sort_keys=True)

    def digest(self):
        return current_digest(self.template_names, self.shape)

    def rendered(self, rows):
        """{(kind, pk): {field: value}} of the cards of the posts behind `rows` (the fields in STORED),
        the listing's HTML with its Edit link left as a slot; and the keys of drafts and scheduled posts."""
        posts = self.load_posts(rows)
        # The permalink is left "" until its own page asks for it (permalink_for): rendering it would
        # double the cost of every listing's first view after a change, for a page a reader may never open.
        fresh = {(post.kind, post.pk): {"html": render_to_string(post.partial_template, {"post": post, "edit_slot": EDIT_SLOT}),
                                        "feed_entry": self.feed_entry(post), "api_item": self.api_item(post),
                                        "search_result": search_result(post), "permalink": "",
                                        "last_modified": post.last_modified}
                 for post in posts}
        return fresh, {(post.kind, post.pk) for post in posts if not readers_see(post)}

    def cards(self, rows, fields=STORED):
        """The cards of a page of (kind, pk, created) rows with `fields` (of STORED), Edit slots left in."""
        return listing_cards(rows, self.card_model, self.rendered, self.digest(), fields)

    def feed_entries(self, rows):
        return self.cards(rows, ("feed_entry", "last_modified"))

    def api_items(self, rows):
        return self.cards(rows, ("api_item",))

    def cards_for(self, user, rows):
        """The cards of a page of rows, with Edit links for `user` only."""
        return fill_edit_slots(self.cards(rows, ("html",)), self.edit_links(user))

    def search_results_for(self, user, rows, words):
        """The search results of a page of rows (as cards, their `html` the result), the searched
        `words` marked, with Edit links for `user` only."""
        return fill_edit_slots(fill_search_slots(self.cards(rows, ("search_result",)), words), self.edit_links(user))

    def permalink_for(self, user, post, responses):
        """{"head", "article"}: `post`'s permalink, with its Edit link for `user` only and the
        `responses` (HTML) under it."""
        row = {"kind": post.kind, "pk": post.pk, "created": post.created}
        if not readers_see(post):  # a draft's or scheduled post's card is never stored: render only this
            card = Card(post.kind, post.pk, post.created, permalink=permalink(*self.load_posts([row])))
            return fill_permalink_slots(card, self.edit_links(user)(card), responses)
        card, = self.cards([row], ("permalink",))
        if not card.permalink:
            with kept_unless_forgotten(self.card_model, {card.kind: [card.pk]}) as stored_now:
                card.permalink = permalink(*self.load_posts([row]))
                stored_now.append(store_field(self.card_model, card, "permalink", self.digest()))
        return fill_permalink_slots(card, self.edit_links(user)(card), responses)

    def edit_links(self, user):
        """card -> its Edit link for `user` ("" where the user may not change posts of its kind)."""
        editable = {kind for kind, model in self.post_models.items() if may_change(user, model)}

        def edit_link(card):
            if card.kind not in editable:
                return ""
            return render_to_string("_edit_link.html", {"post": self.post_models[card.kind](pk=card.pk), "user": user})

        return edit_link


# --- Forgetting cards when what they show changes -------------------------------------------------


def delete_cards(card_model, ids_by_kind):
    """Delete the cards of {kind: [post id, ...]} (those of every post with None)."""
    if ids_by_kind is None:
        card_model.objects.all().delete()
    elif ids_by_kind:
        card_model.objects.filter(of_posts(ids_by_kind)).delete()


def mark_forgotten():
    """Tell readers rendering cards now that a write has committed (see listing_cards)."""
    cache.set(FORGOTTEN_KEY, uuid.uuid4().hex, timeout=None)


def forget(card_model, ids_by_kind):
    """Delete the cards of {kind: [post id, ...]} (every card with None), now and again after
    commit, when the mark comes first: a reader that stores after the delete then sees a new mark."""
    if ids_by_kind is not None:
        ids_by_kind = {kind: list(ids) for kind, ids in ids_by_kind.items() if ids}
        if not ids_by_kind:
            return

    def after_commit():
        mark_forgotten()
        delete_cards(card_model, ids_by_kind)

    delete_cards(card_model, ids_by_kind)
    transaction.on_commit(after_commit)


def forget_all(card_model, **kwargs):
    forget(card_model, None)


def tagged_ids(post_models, tag):
    """{kind: [id, ...]} of the posts carrying `tag`."""
    return {kind: list(model.tags.through.objects.filter(tag=tag).values_list(f"{kind}_id", flat=True))
            for kind, model in post_models.items()}


def post_written(card_model, sender, instance, **kwargs):
    forget(card_model, {instance.kind: [instance.pk]})


def tags_changed(card_model, post_models, kind, instance, action, reverse, pk_set, **kwargs):
    """A post's tags changed (from the post's side), or a tag's posts (from the tag's side)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        forget(card_model, {kind: [instance.pk]})
    elif pk_set is not None:
        forget(card_model, {kind: pk_set})
    else:  # the tag's posts of this kind are about to be cleared
        forget(card_model, {kind: tagged_ids({kind: post_models[kind]}, instance)[kind]})


def tag_renaming(card_model, post_models, sender, instance, raw=False, **kwargs):
    if instance.pk and sender.objects.filter(pk=instance.pk).exclude(tag=instance.tag).exists():
        forget(card_model, tagged_ids(post_models, instance))


def tag_deleting(card_model, post_models, sender, instance, **kwargs):
    forget(card_model, tagged_ids(post_models, instance))


def links_of_posts_changed(card_model, post_link_model, link_ids, **kwargs):
    linking = post_link_model.objects.filter(link_id__in=list(link_ids)).values_list("kind", "post_id").distinct()
    forget(card_model, group_ids(linking))


def bulk_write(card_model, covered, sender, **kwargs):
    """posts_changed from a sender whose writes the model signals above do not cover: forget them all."""
    if sender not in covered:
        forget_all(card_model)


def connect_upkeep(card_model, post_models, tag_model, post_link_model, covered):
    """Keep stored cards in step with every write. `covered`: the senders of posts_changed whose
    writes the model signals (or links_changed) already announce card by card."""
    for kind, model in post_models.items():
        written = partial(post_written, card_model)
        post_save.connect(written, sender=model, weak=False, dispatch_uid=f"cards-save-{kind}")
        post_delete.connect(written, sender=model, weak=False, dispatch_uid=f"cards-delete-{kind}")
        m2m_changed.connect(partial(tags_changed, card_model, post_models, kind), sender=model.tags.through,
                            weak=False, dispatch_uid=f"cards-tags-{kind}")
    pre_save.connect(partial(tag_renaming, card_model, post_models), sender=tag_model, weak=False,
                     dispatch_uid="cards-tag-rename")
    pre_delete.connect(partial(tag_deleting, card_model, post_models), sender=tag_model, weak=False,
                       dispatch_uid="cards-tag-delete")
    links_changed.connect(partial(links_of_posts_changed, card_model, post_link_model), weak=False,
                          dispatch_uid="cards-links")
    posts_changed.connect(partial(bulk_write, card_model, frozenset(covered)), weak=False, dispatch_uid="cards-bulk")
