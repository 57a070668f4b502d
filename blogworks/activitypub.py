"""ActivityPub for a single-author blog: documents we serve, activities we send, ones we receive.

What lives here:
- builders (plain dicts, ready for json.dumps): webfinger, actor_document, post_object, article
  (the Create), update_activity, delete_activity, accept, ordered_collection(_page);
- parse_inbox_activity: validates an inbox POST body and returns an InboxActivity (follow,
  unfollow, delete_actor, delete_object, reply) or raises InboxError carrying a 4xx status;
- deliver (signed POST to a follower's inbox), fetch_actor (GET an actor document), and
  retry_delay (the backoff the background deliverer follows).

Nothing here touches the database: posts come in as dicts, see post_object for the keys.
"""

import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from . import netfetch
from .signatures import sign_request

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
CONTENT_TYPE = "application/activity+json"
# What servers send in Accept; Mastodon sends both forms, some servers only the ld+json one.
ACCEPT = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
MAX_INBOX_BYTES = 256_000
DeliveryError = netfetch.FetchError


class InboxError(Exception):
    """An inbox body we refuse; `status` is the 4xx to answer (400 malformed, 413 too big, 422 unsupported)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def key_id(actor_url: str) -> str:
    """The id of the actor's public key: Mastodon's `#main-key` convention, resolvable via the actor."""
    return f"{actor_url}#main-key"


def _iso(value) -> str | None:
    """ISO 8601 in UTC with a Z, as Mastodon parses most reliably; strings pass through."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def webfinger(resource: str, username: str, host: str, actor_url: str, profile_url: str | None = None) -> dict | None:
    """The JRD for `acct:username@host` (or the actor URL itself); None for any other resource (404)."""
    subject = f"acct:{username}@{host}"
    wanted = resource.strip()
    if wanted.lower() not in (subject.lower(), f"{username}@{host}".lower()) and wanted != actor_url:
        return None
    links = [{"rel": "self", "type": CONTENT_TYPE, "href": actor_url}]
    if profile_url:
        links.append({"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": profile_url})
    return {"subject": subject, "aliases": [actor_url] + ([profile_url] if profile_url else []), "links": links}


def actor_document(actor_url, username, name, summary, inbox, outbox, followers, public_pem,
                   icon=None, url=None, shared_inbox=None) -> dict:
    """The blog's actor. A Person so Mastodon shows it as an account, not flagged as a bot (Service)."""
    doc = {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": actor_url,
        "type": "Person",
        "preferredUsername": username,
        "name": name,
        "summary": summary,
        "inbox": inbox,
        "outbox": outbox,
        "followers": followers,
        "url": url or actor_url,
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "publicKey": {"id": key_id(actor_url), "owner": actor_url, "publicKeyPem": public_pem},
    }
    if shared_inbox:
        doc["endpoints"] = {"sharedInbox": shared_inbox}
    if icon:
        doc["icon"] = {"type": "Image", "url": icon}
    return doc


def hashtag_name(tag: str) -> str:
    """Mastodon hashtags are word characters only, so `django-ninja` goes out as `#djangoninja`."""
    return "#" + re.sub(r"[^\w]", "", tag)


def _hashtag_html(tags: list[dict]) -> str:
    """Hashtag links in the markup Mastodon recognises (class/rel), so they render as hashtags."""
    links = [
        f'<a href="{html.escape(t["url"])}" class="mention hashtag" rel="tag">'
        f'#<span>{html.escape(hashtag_name(t["name"])[1:])}</span></a>'
        for t in tags
    ]
    return f"<p>{' '.join(links)}</p>" if links else ""


def post_object(post: dict, actor_url: str, followers_url: str) -> dict:
    """The Note (default) or Article for a published post; also what its id serves to AP clients.

    post keys: id (stable URL of the object), url (the HTML page), content_html (already
    sanitized), optionally type ("Note"/"Article"), title, link (the linked page), tags
    ([{"name", "url"}], url = our tag page), published, updated (datetime or ISO string).
    Mastodon shows a Note's content in full but only an Article's title and link, so a link blog
    is best as Notes; the link and hashtags go into the content so every server shows them.
    """
    kind = post.get("type") or "Note"
    content = post["content_html"]
    link = post.get("link")
    if link and link not in content:
        content += f'<p><a href="{html.escape(link)}">{html.escape(post.get("title") or link)}</a></p>'
    content += _hashtag_html(post.get("tags") or [])
    obj = {
        "id": post["id"],
        "type": kind,
        "attributedTo": actor_url,
        "to": [PUBLIC],
        "cc": [followers_url],
        "url": post["url"],
        "content": content,
        "published": _iso(post.get("published")),
        "tag": [
            {"type": "Hashtag", "href": t["url"], "name": hashtag_name(t["name"])} for t in post.get("tags") or []
        ],
    }
    if post.get("title") and kind != "Note":
        obj["name"] = post["title"]
    if post.get("updated"):
        obj["updated"] = _iso(post["updated"])
    return obj


def _activity(kind: str, activity_id: str, actor_url: str, obj, followers_url: str) -> dict:
    return {
        "@context": AS_CONTEXT,
        "id": activity_id,
        "type": kind,
        "actor": actor_url,
        "to": [PUBLIC],
        "cc": [followers_url],
        "object": obj,
    }


def article(post: dict, actor_url: str, followers_url: str) -> dict:
    """The Create activity delivering a newly published post (see post_object for the dict)."""
    obj = post_object(post, actor_url, followers_url)
    create = _activity("Create", f"{post['id']}#create", actor_url, obj, followers_url)
    create["published"] = obj["published"]
    return create


def update_activity(post: dict, actor_url: str, followers_url: str) -> dict:
    """The Update for an edited post. Its id carries the edit time: each edit is a new activity,
    and receivers ignore an activity id they have already seen."""
    obj = post_object(post, actor_url, followers_url)
    stamp = obj.get("updated") or _iso(datetime.now(timezone.utc))
    return _activity("Update", f"{post['id']}#update-{stamp}", actor_url, obj, followers_url)


def delete_activity(object_id: str, actor_url: str, followers_url: str) -> dict:
    """The Delete for a removed (or unpublished) post, with a Tombstone as Mastodon sends."""
    tomb = {"id": object_id, "type": "Tombstone"}
    return _activity("Delete", f"{object_id}#delete", actor_url, tomb, followers_url)


def accept(follow_activity: dict, actor_url: str) -> dict:
    """The Accept answering a Follow. It embeds the Follow, because Mastodon matches on the
    embedded object's id; its own id is derived from the Follow's, so a repeat is recognisable."""
    digest = hashlib.sha256(str(follow_activity.get("id")).encode()).hexdigest()[:16]
    return {
        "@context": AS_CONTEXT,
        "id": f"{actor_url}#accepts/{digest}",
        "type": "Accept",
        "actor": actor_url,
        "object": follow_activity,
    }


def ordered_collection(collection_id: str, total: int, first: str | None = None, items: list | None = None) -> dict:
    """An OrderedCollection: with `first` (a page URL) for the outbox, or inline `items` when few.
    For followers, pass only total: Mastodon shows the count and we keep the list private."""
    doc = {"@context": AS_CONTEXT, "id": collection_id, "type": "OrderedCollection", "totalItems": total}
    if first:
        doc["first"] = first
    if items is not None:
        doc["orderedItems"] = items
    return doc


def ordered_collection_page(page_id: str, part_of: str, items: list,
                            next_page: str | None = None, prev_page: str | None = None) -> dict:
    """One page of an OrderedCollection (the outbox pages hold Create activities, newest first)."""
    doc = {
        "@context": AS_CONTEXT,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": items,
    }
    if next_page:
        doc["next"] = next_page
    if prev_page:
        doc["prev"] = prev_page
    return doc


@dataclass
class Reply:
    """A fediverse reply to one of our posts. content_html is the sender's HTML, NOT sanitized."""

    id: str
    url: str
    in_reply_to: str
    actor: str
    content_html: str
    published: str | None
    summary: str | None = None  # a content warning, when the sender set one


@dataclass
class InboxActivity:
    """What an inbox POST asks. kind is follow, unfollow, delete_actor, delete_object or reply.

    object_id: for follow the followed actor (check it is ours), for unfollow the Follow's id,
    for delete_object the deleted object's id (a reply we may hold).
    """

    kind: str
    id: str
    actor: str
    object_id: str | None = None
    reply: Reply | None = None
    activity: dict = field(default_factory=dict, repr=False)


def _load_json(body: bytes) -> dict:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InboxError("body is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise InboxError("body is not a JSON object")
    return data


def _id_of(value, what: str) -> str:
    """An AS2 reference is either a URL string or an object carrying the URL as `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
        raise InboxError(f"{what} is not an http(s) URL or an object with one")
    return value


def _same_origin(url: str, actor: str, what: str) -> None:
    """An actor may only speak for objects on its own server; anything else is a spoof."""
    if urlsplit(url).netloc.lower() != urlsplit(actor).netloc.lower():
        raise InboxError(f"{what} is not on the actor's server")


def parse_inbox_activity(body: bytes, max_bytes: int = MAX_INBOX_BYTES) -> InboxActivity:
    """Validate an inbox POST body; raises InboxError (with .status) for anything we refuse.

    It checks shape only: the caller must also verify the HTTP signature (signatures.verify_request)
    and that the signing key's owner is `result.actor`.
    """
    if len(body) > max_bytes:
        raise InboxError(f"body is larger than {max_bytes} bytes", status=413)
    data = _load_json(body)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise InboxError("activity has no type")
    actor = _id_of(data.get("actor"), "actor")
    activity_id = _id_of(data.get("id"), "id")
    parse = _PARSERS.get(kind)
    if parse is None:
        # 422, not 400: well-formed, just not something a blog handles (Like, Announce, ...).
        raise InboxError(f"unsupported activity type {kind!r}", status=422)
    result = parse(data, activity_id, actor)
    result.activity = data
    return result


def _parse_follow(data, activity_id, actor):
    return InboxActivity("follow", activity_id, actor, _id_of(data.get("object"), "object"))


def _parse_undo(data, activity_id, actor):
    """Undo(Follow). Mastodon embeds the Follow; a bare id is passed on for the caller to match
    against the Follow ids it stored, since its type cannot be known without fetching it."""
    obj = data.get("object")
    if isinstance(obj, dict):
        if obj.get("type") != "Follow":
            raise InboxError(f"unsupported Undo of {obj.get('type')!r}", status=422)
        if obj.get("actor") is not None and _id_of(obj["actor"], "object.actor") != actor:
            raise InboxError("Undo of someone else's Follow")
    return InboxActivity("unfollow", activity_id, actor, _id_of(obj, "object"))


def _parse_delete(data, activity_id, actor):
    target = _id_of(data.get("object"), "object")
    if target == actor:
        return InboxActivity("delete_actor", activity_id, actor, target)
    _same_origin(target, actor, "deleted object")
    return InboxActivity("delete_object", activity_id, actor, target)


def _parse_create(data, activity_id, actor):
    """Create(Note) answering something: a reply. Other Creates are not for a blog's inbox."""
    note = data.get("object")
    if not isinstance(note, dict) or note.get("type") != "Note" or not note.get("inReplyTo"):
        raise InboxError("only Create of a Note replying to a post is accepted", status=422)
    note_id = _id_of(note, "object")
    _same_origin(note_id, actor, "note")
    if _id_of(note.get("attributedTo"), "attributedTo") != actor:
        raise InboxError("note is attributed to someone other than the actor")
    content = note.get("content")
    if not isinstance(content, str):
        raise InboxError("note has no content")
    url = note.get("url") if isinstance(note.get("url"), str) else note_id
    summary = note.get("summary") if isinstance(note.get("summary"), str) else None
    published = note.get("published") if isinstance(note.get("published"), str) else None
    reply = Reply(note_id, url, _id_of(note["inReplyTo"], "inReplyTo"), actor, content, published, summary)
    return InboxActivity("reply", activity_id, actor, note_id, reply)


_PARSERS = {"Follow": _parse_follow, "Undo": _parse_undo, "Delete": _parse_delete, "Create": _parse_create}


def deliver(inbox_url: str, activity: dict, key_id: str, private_pem: str, timeout: float = 10.0) -> int:
    """POST a signed activity to an inbox; returns the HTTP status, raises DeliveryError on network
    failure. Run it in the background, never in the request that saved the post."""
    body = json.dumps(activity).encode()
    headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
    headers.update(sign_request("POST", inbox_url, headers, body, key_id, private_pem))
    # The answer's body is of no use; read little of it so a chatty server costs nothing.
    return netfetch.request("POST", inbox_url, headers=headers, data=body, timeout=timeout, max_bytes=65_536).status


def should_retry(status: int) -> bool:
    """Retry server errors, timeouts and rate limits; any other 4xx will not get better."""
    return status >= 500 or status in (408, 429)


# Roughly Mastodon's schedule: minutes, then hours, giving up after about a week of failures.
RETRY_DELAYS = (60, 300, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 72 * 3600)


def retry_delay(attempt: int) -> int | None:
    """Seconds to wait before retry number `attempt` (1 = first retry); None means give up."""
    return RETRY_DELAYS[attempt - 1] if 1 <= attempt <= len(RETRY_DELAYS) else None


@dataclass
class Actor:
    """What we need to know about a remote actor (a follower, or a signer)."""

    id: str
    inbox: str
    shared_inbox: str | None
    public_key_id: str | None
    public_key_pem: str | None
    preferred_username: str | None = None
    name: str | None = None
    url: str | None = None


def fetch_actor(actor_url: str, key_id: str | None = None, private_pem: str | None = None,
                timeout: float = 10.0, max_bytes: int = 1_000_000) -> Actor:
    """GET an actor document (signed when a key is given, for servers in authorized-fetch mode).

    A key id like `https://h/users/a#main-key` fetches the actor (the fragment never reaches the
    server). Raises DeliveryError on network failure, a non-200 answer or a malformed document.
    """
    url = actor_url.split("#", 1)[0]
    headers = {"Accept": ACCEPT}
    if key_id and private_pem:
        headers.update(sign_request("GET", url, headers, None, key_id, private_pem))
    resp = netfetch.request("GET", url, headers=headers, timeout=timeout, max_bytes=max_bytes)
    if resp.status != 200:
        raise DeliveryError(f"GET {url} answered {resp.status}")
    try:
        return _parse_actor(_load_json(resp.body), url)
    except InboxError as error:
        raise DeliveryError(f"{url}: {error}") from None


def _parse_actor(doc: dict, fetched_url: str) -> Actor:
    actor_id = _id_of(doc.get("id"), "id")
    # The document must be the one we asked for: a server may not speak for another's actors.
    if actor_id != fetched_url:
        raise InboxError(f"actor id {actor_id!r} is not the URL fetched")
    key = doc.get("publicKey") if isinstance(doc.get("publicKey"), dict) else {}
    endpoints = doc.get("endpoints") if isinstance(doc.get("endpoints"), dict) else {}
    shared = endpoints.get("sharedInbox")
    return Actor(
        id=actor_id,
        inbox=_id_of(doc.get("inbox"), "inbox"),
        shared_inbox=shared if isinstance(shared, str) else None,
        public_key_id=key.get("id") if isinstance(key.get("id"), str) else None,
        public_key_pem=key.get("publicKeyPem") if isinstance(key.get("publicKeyPem"), str) else None,
        preferred_username=doc.get("preferredUsername") if isinstance(doc.get("preferredUsername"), str) else None,
        name=doc.get("name") if isinstance(doc.get("name"), str) else None,
        url=doc.get("url") if isinstance(doc.get("url"), str) else None,
    )


def key_lookup(cache: dict | None = None, **fetch_kwargs):
    """A public_pem_lookup for signatures.verify_request: fetches the key's actor and returns its
    PEM when the actor really publishes that key id. `cache` (key id -> (owner, pem)) saves
    refetching; after a lookup, cache[key_id][0] is the owner the caller compares to the actor."""
    cache = {} if cache is None else cache

    def lookup(key_id_: str) -> str | None:
        if key_id_ not in cache:
            try:
                actor = fetch_actor(key_id_, **fetch_kwargs)
            except DeliveryError:
                return None
            if actor.public_key_id != key_id_ or not actor.public_key_pem:
                return None
            cache[key_id_] = (actor.id, actor.public_key_pem)
        return cache[key_id_][1]

    lookup.cache = cache
    return lookup
