"""The blog on the fediverse and the IndieWeb: the background jobs that deliver, ping and mention,
and the checks an inbox POST passes before the blog trusts it.

The inbox: `verified_activity` checks a POST, `receive` does what it asks (follow, unfollow, forget
an actor or a reply, keep a reply: `store_reply`, as `store_mention` keeps a verified Webmention);
`activity_json`, `plain_answer`, `wants_activity_json` and `body_too_big` are the answers and checks
the fediverse views share.

Jobs (django-tasks, run by `python linkblog.py worker`; their arguments are JSON):
- announce_post(kind, post_id) runs after every save or delete of a post and tells followers what
  changed since they were last told (the Announcement model remembers): Create when the post first
  becomes public, Update when what they saw changed, Delete when it is deleted or no longer public.
  Create and Update also ping the WebSub hub and send Webmentions to the pages the post links.
  "Public" is `Model.objects.published()`, checked when the job runs: a draft is never announced,
  and a post dated in the future gets its job enqueued for that date (post_changed).
- deliver(inbox, activity): one signed POST, retried with backoff (jobs.retry_later); when the
  retries run out (about five days) the server is given up on and its followers removed.
- welcome_follower(follower_id, follow): fetch a new follower's actor for its inbox, then Accept.
- ping_hub(topics), send_webmention(source, target), receive_webmention(source, target, kind, post_id).

Models come from the app registry ("linkblog.X"), and URLs from their route names: this package
never imports linkblog. Each post model supplies activitypub_object(), feed_urls() and
mentioned_urls() (blogworks/syndication.py); Follower, Announcement, Mention and ActorKey are declared in linkblog.py.
"""

import hashlib
import json
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import escape
from django_tasks import task

from . import activitypub as ap
from . import netfetch, text, webmention
from .dates import day_range
from .jobs import enqueue_on_commit, retry_later
from .signatures import SignatureError, verify_request
from .syndication import absolute

TIMEOUT = 10.0  # seconds for any one request to another server
KEY_CACHE_SECONDS = 3600  # how long a signer's public key is trusted before it is fetched again


def linkblog_model(name):
    return apps.get_model("linkblog", name)


def actor_url():
    return absolute("ap_actor")


def followers_url():
    return absolute("ap_followers")


def signing_key():
    """(key id, private PEM) the blog signs its requests with."""
    return ap.key_id(actor_url()), linkblog_model("ActorKey").current().private_pem


def is_failure(status):
    """No answer, or one worth trying again later (5xx, 408, 429)."""
    return status is None or ap.should_retry(status)


# --- Receiving: is an inbox POST what it claims to be? ------------------------------------------


class SharedKeyCache:
    """The dict activitypub.key_lookup keeps fetched keys in, stored in Django's cache instead: every
    worker (and server) shares them, and they expire, so a rotated key is fetched again."""

    @staticmethod
    def _key(key_id):
        return "actor-key:" + hashlib.sha256(key_id.encode()).hexdigest()

    def __contains__(self, key_id):
        return cache.get(self._key(key_id)) is not None

    def __getitem__(self, key_id):
        value = cache.get(self._key(key_id))
        if value is None:
            raise KeyError(key_id)
        return value

    def __setitem__(self, key_id, owner_and_pem):
        cache.set(self._key(key_id), tuple(owner_and_pem), KEY_CACHE_SECONDS)

    def __delitem__(self, key_id):
        cache.delete(self._key(key_id))


def verified_activity(request):
    """The InboxActivity a POST carries, once its body is well-formed, its HTTP signature verifies
    and its signer is the activity's actor. Raises InboxError (its .status) or SignatureError (401).
    A signature that fails against a key kept from earlier is checked once more against the key
    fetched afresh: the sender may have rotated its key since."""
    activity = ap.parse_inbox_activity(request.body)
    keys = SharedKeyCache()
    lookup = ap.key_lookup(keys, timeout=TIMEOUT)
    kept_from_earlier = []

    def lookup_noting_kept_keys(key_id):
        if key_id in keys:
            kept_from_earlier.append(key_id)
        return lookup(key_id)

    def verify(pem_lookup):
        return verify_request("POST", request.get_full_path(), request.headers, request.body, pem_lookup)

    try:
        key_id = verify(lookup_noting_kept_keys)
    except SignatureError:
        if not kept_from_earlier:
            raise
        for key_id in kept_from_earlier:
            del keys[key_id]
        key_id = verify(lookup)
    if lookup.cache[key_id][0] != activity.actor:
        raise SignatureError("the request is signed by someone other than the activity's actor")
    return activity


# --- The inbox and the answers to other servers ---------------------------------------------


def activity_json(document, status=200):
    return HttpResponse(json.dumps(document), status=status, content_type=ap.CONTENT_TYPE)


def plain_answer(status, message):
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def wants_activity_json(request):
    accept = request.headers.get("Accept", "")
    return "application/activity+json" in accept or "application/ld+json" in accept


def body_too_big(request, limit):
    """True when the declared body is bigger than `limit` (checked before reading it)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    return not length.isdigit() or int(length) > limit


def site_host():
    return urlsplit(settings.LINKBLOG_BASE_URL).netloc


def outbox_page(outbox_url, page, posts):
    """Page `page` (a Django Page) of the outbox: its `posts` as Creates, linking the pages either side."""
    actor, followers = actor_url(), followers_url()
    items = [ap.article(post.activitypub_object(), actor, followers) for post in posts]
    neighbour = {"next_page": page.has_next() and page.next_page_number(), "prev_page": page.has_previous() and page.previous_page_number()}
    links = {name: f"{outbox_url}?page={number}" for name, number in neighbour.items() if number}
    return ap.ordered_collection_page(f"{outbox_url}?page={page.number}", outbox_url, items, **links)


def post_at(url, post_models, find_post):
    """The published post one of our URLs names (its permalink or its ActivityPub id), or None.
    `find_post(start, end, slug)`: the published post with this slug on this day, else Http404."""
    base = settings.LINKBLOG_BASE_URL
    if not url.startswith(base + "/"):
        return None
    try:
        match = resolve(urlsplit(url[len(base):]).path)
        if match.url_name == "ap_object" and match.kwargs["kind"] in post_models:
            return post_models[match.kwargs["kind"]].objects.published().filter(pk=match.kwargs["pk"]).first()
        if match.url_name == "permalink":
            year, month, day, slug = (match.kwargs[name] for name in ("year", "month", "day", "slug"))
            return find_post(*day_range(year, month, day), slug)
    except (Resolver404, Http404):
        pass
    return None


# What the inbox does with each kind of activity (blogworks.activitypub.InboxActivity.kind). Each
# takes `post_at`: linkblog.py's finder of the post one of its URLs names.


def follow(activity, post_at):
    if activity.object_id != actor_url():
        raise ap.InboxError("this blog's only account is its actor", status=422)
    follower, _ = linkblog_model("Follower").objects.update_or_create(actor=activity.actor, defaults={"follow_id": activity.id})
    welcome_follower.enqueue(follower.pk, activity.activity)  # Accept, from the worker


def unfollow(activity, post_at):
    followers = linkblog_model("Follower").objects.filter(actor=activity.actor)
    if not isinstance(activity.activity.get("object"), dict):
        followers = followers.filter(follow_id=activity.object_id)  # a bare id: only an Undo of our Follow
    followers.delete()


def forget_actor(activity, post_at):
    linkblog_model("Follower").objects.filter(actor=activity.actor).delete()
    linkblog_model("Reply").objects.filter(actor=activity.actor).delete()


def forget_reply(activity, post_at):
    linkblog_model("Reply").objects.filter(note_id=activity.object_id, actor=activity.actor).delete()


def keep_reply(activity, post_at):
    post = post_at(activity.reply.in_reply_to)
    if post is not None:  # a reply to something else is none of the blog's business
        store_reply(activity.reply, post)


INBOX_ACTIONS = {"follow": follow, "unfollow": unfollow, "delete_actor": forget_actor,
                 "delete_object": forget_reply, "reply": keep_reply}


def receive(activity, post_at):
    """Do what a verified InboxActivity asks; `post_at(url)` finds the published post a URL names."""
    INBOX_ACTIONS[activity.kind](activity, post_at)


# --- Announcing posts ---------------------------------------------------------------------------


def post_changed(post, deleted=False):
    """After a post is saved or deleted: reconcile what the world knows of it once the transaction
    commits, or, for a post dated in the future, at that date (when it becomes public)."""
    job = announce_post
    if not deleted and post.created > timezone.now():
        job = announce_post.using(run_after=post.created)
    enqueue_on_commit(job, post.kind, post.pk)


def fingerprint(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@task()
def announce_post(kind, post_id):
    """Create, Update or Delete for followers, whichever brings them up to date with the post."""
    post = linkblog_model(kind).objects.published().filter(pk=post_id).prefetch_related("tags").first()
    if post is None:
        withdraw(kind, post_id)
        return
    obj = post.activitypub_object()
    activity = news_of(kind, post_id, obj)
    if activity is not None:
        deliver_to_followers(activity)
        spread_the_word(post)


def news_of(kind, post_id, obj):
    """The activity followers have not seen yet for this public post's object, or None."""
    announcements = linkblog_model("Announcement").objects
    record, created = announcements.get_or_create(kind=kind, post_id=post_id,
                                                  defaults={"object_id": obj["id"], "fingerprint": fingerprint(obj)})
    if created:
        return ap.article(obj, actor_url(), followers_url())
    # The filter on the old fingerprint makes two jobs racing over one edit send one Update.
    if record.fingerprint == fingerprint(obj) or not announcements.filter(
            pk=record.pk, fingerprint=record.fingerprint).update(fingerprint=fingerprint(obj), announced=timezone.now()):
        return None
    return ap.update_activity({**obj, "updated": timezone.now()}, actor_url(), followers_url())


def withdraw(kind, post_id):
    """A post followers were told of is gone or no longer public: Delete it from their timelines."""
    record = linkblog_model("Announcement").objects.filter(kind=kind, post_id=post_id).first()
    if record is not None and record.delete()[0]:
        deliver_to_followers(ap.delete_activity(record.object_id, actor_url(), followers_url()))


def deliver_to_followers(activity):
    """One delivery job per inbox (a server's shared inbox once for all its followers)."""
    for inbox in linkblog_model("Follower").delivery_inboxes():
        deliver.enqueue(inbox, activity)


def spread_the_word(post):
    """Ping the WebSub hub for the post's feeds and send Webmentions to the pages it links."""
    if settings.LINKBLOG_WEBSUB_HUB:
        ping_hub.enqueue(post.feed_urls())
    source = settings.LINKBLOG_BASE_URL + post.get_absolute_url()
    for target in post.mentioned_urls():
        send_webmention.enqueue(source, target)


@task()
def deliver(inbox, activity, attempt=0):
    """POST a signed activity to an inbox; a failing server is retried, and given up on at last."""
    key_id, private_pem = signing_key()
    try:
        status = ap.deliver(inbox, activity, key_id, private_pem, timeout=TIMEOUT)
    except netfetch.RefusedAddress:
        return  # an inbox on a private network: never ours to reach, however often we try
    except ap.DeliveryError:
        status = None
    followers = linkblog_model("Follower").at_inbox(inbox)
    if not is_failure(status):
        followers.exclude(failing_since=None).update(failing_since=None)
        return  # delivered, or refused for good (a 4xx will not get better)
    followers.filter(failing_since=None).update(failing_since=timezone.now())
    if not retry_later(deliver, attempt, inbox, activity):
        followers.delete()  # a dead server: its followers can follow again when it is back


@task()
def welcome_follower(follower_id, follow, attempt=0):
    """Learn a new follower's inbox from its actor document, then deliver the Accept."""
    followers = linkblog_model("Follower").objects.filter(pk=follower_id)
    follower = followers.first()
    if follower is None:
        return  # unfollowed in the meantime
    try:
        actor = ap.fetch_actor(follower.actor, *signing_key(), timeout=TIMEOUT)
    except netfetch.RefusedAddress:
        follower.delete()  # an actor on a private network cannot be followed back
        return
    except ap.DeliveryError:
        if not retry_later(welcome_follower, attempt, follower_id, follow):
            follower.delete()
        return
    followers.update(inbox=actor.inbox, shared_inbox=actor.shared_inbox or "",
                     name=(actor.preferred_username or "")[:255])
    deliver.enqueue(actor.inbox, ap.accept(follow, actor_url()))


@task()
def ping_hub(topics, attempt=0):
    """Tell the WebSub hub (LINKBLOG_WEBSUB_HUB) that these feeds changed."""
    if not settings.LINKBLOG_WEBSUB_HUB:
        return
    try:
        status = webmention.websub_ping(settings.LINKBLOG_WEBSUB_HUB, topics, timeout=TIMEOUT)
    except webmention.FetchError:
        status = None
    if is_failure(status):
        retry_later(ping_hub, attempt, topics)


@task()
def send_webmention(source, target, attempt=0):
    """Tell the linked page's Webmention endpoint, if it has one, that our post links it."""
    endpoint = webmention.discover_endpoint(target, timeout=TIMEOUT)
    if endpoint is None:
        return
    try:
        status = webmention.send(source, target, endpoint, timeout=TIMEOUT)
    except netfetch.RefusedAddress:
        return  # a page naming an endpoint on a private network
    except webmention.FetchError:
        status = None
    if is_failure(status):
        retry_later(send_webmention, attempt, source, target)


@task()
def receive_webmention(source, target, kind, post_id, attempt=0):
    """Check that the source really links our post, then keep it for the author to approve."""
    mentions = linkblog_model("Mention")
    try:
        found = webmention.verify(source, target, timeout=TIMEOUT)
    except webmention.WebmentionError as error:
        if error.deleted:  # gone, or no longer linking us: the spec says forget it
            mentions.objects.filter(source=source, target=target).delete()
        return
    except netfetch.RefusedAddress:
        return  # a source on a private network: someone asked us to read our own network's pages
    except webmention.FetchError:
        retry_later(receive_webmention, attempt, source, target, kind, post_id)
        return
    store_mention(found, kind, post_id)


# --- Keeping what others said: replies and Webmentions, for the author to approve --------------


def parsed_datetime(value):
    """An ISO 8601 date-time sent by a stranger, or None when it is missing or malformed."""
    try:
        return parse_datetime(value or "")
    except ValueError:
        return None


def store_reply(reply, post):
    """Keep a reply (a blogworks.activitypub.Reply) to `post`; an edited reply replaces the
    text but keeps the author's decision. URLs too long to store are not kept."""
    if max(len(reply.id), len(reply.url), len(reply.actor)) > 1000:
        return
    actor = urlsplit(reply.actor)
    linkblog_model("Reply").objects.update_or_create(note_id=reply.id, defaults={
        "actor": reply.actor, "post_kind": post.kind, "post_id": post.pk, "url": reply.url,
        # Mastodon's actor URLs end with the account name: /users/alice is alice@host.
        "author_name": f"{actor.path.rstrip('/').rsplit('/', 1)[-1]}@{actor.netloc}"[:255],
        "author_url": reply.actor, "content_html": text.sanitize_html(reply.content_html),
        "published": parsed_datetime(reply.published),
    })


def store_mention(mention, kind, post_id):
    """Keep a verified Webmention (a blogworks.webmention.Mention) of a post."""
    content = text.sanitize_html(mention.content_html) if mention.content_html else escape(mention.content_text or "")
    author_url = mention.author_url if text.is_safe_url(mention.author_url) else ""
    linkblog_model("Mention").objects.update_or_create(source=mention.source, target=mention.target, defaults={
        "post_kind": kind, "post_id": post_id, "kind": mention.kind,
        "url": mention.url if len(mention.url) <= 1000 else mention.source,
        "author_name": (mention.author_name or "")[:255], "author_url": author_url[:1000],
        "content_html": content, "published": parsed_datetime(mention.published),
    })
