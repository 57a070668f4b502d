"""Listings: posts of several kinds as one newest-first list, paginated, loaded and counted.

Each kind of post has its own table. The listings readers page through (home, tag pages, feeds, the
API) read a listing store instead, kept in step with every write by store_listing(): one row per post
(`listed`: kind, post_id, created, is_draft) and one per (tag, post) (`listed_tag`, the same columns
and the tag), each with an index in listing order, so that a page is an index range and costs the same
at any size. A scheduled post is a row dated later: readers' filter (created <= now) lets it in at its
moment without a write. Per-tag tallies (`tally`: a tag's non-draft rows and the newest one's date;
tag NULL for every post) count without scanning: see tally_count(). Pair tallies (`pair_tally`: how
many non-draft posts each two tags share) count a page combining two tags and give a tag's related
tags, and month tallies (`month_tally`: each UTC month's non-draft rows and the newest one's date)
count the date archives' months, each with the same rule for scheduled posts.

A permalink's neighbours are a step each way along the store's index (posts_beside), and a page
past the middle of a listing is read from its oldest end (ListingPaginator). The date archives'
pages are ranges of the same index, and their months are counted from the month tallies
(published_by_month). Search mixes kinds with a UNION ALL of (kind, pk, created) rows, one SELECT
per kind (mixed_posts).
Every function takes its models or `{kind: queryset}` as arguments; none knows the models by name.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone as dt_timezone
from itertools import combinations, islice

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import connections, models, transaction
from django.db.models import Case, Count, F, Max, OuterRef, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils.functional import cached_property

from .database import condition_sql, field_converters, from_row
from .dates import month_span


def union_all(querysets):
    """One query of the rows of every queryset (None when there are none): UNION ALL, no de-duplication."""
    first, *rest = querysets or [None]
    return first.union(*rest, all=True) if rest else first


def with_kind(queryset, kind):
    return queryset.order_by().annotate(kind=Value(kind, output_field=models.CharField()))


def mixed_posts(querysets):
    """One newest-first query over several kinds: rows of (kind, pk, created), ready to paginate."""
    rows = union_all([with_kind(queryset, kind).values("kind", "pk", "created") for kind, queryset in querysets.items()])
    # kind last: the same pk at the same moment in two kinds must still have one fixed order, or
    # LIMIT/OFFSET pages could repeat one post and skip another. The listing store's order (below).
    return rows.order_by("-created", "-pk", "-kind")


def count_mixed_posts(querysets):
    """How many rows mixed_posts(querysets) has, in one query over the posts' ids alone: each kind's
    ids can come from an index, where counting the (kind, pk, created) rows reads every table row."""
    ids = union_all([queryset.order_by().values("pk") for queryset in querysets.values()])
    return ids.count() if ids is not None else 0


def group_ids(keys):
    """{kind: [post id, ...]} of (kind, post id) keys, in their order."""
    ids_by_kind = {}
    for kind, post_id in keys:
        ids_by_kind.setdefault(kind, []).append(post_id)
    return ids_by_kind


def row_ids(rows):
    """{kind: [pk, ...]} of {"kind", "pk", ...} rows, in their order."""
    return group_ids((row["kind"], row["pk"]) for row in rows)


def of_posts_sql(ids_by_kind, quote):
    """(sql, params): a WHERE condition on a table's `kind` and `post_id` columns for the posts of
    {kind: [post id, ...]} (not empty)."""
    sql = " OR ".join(f"({quote('kind')} = %s AND {quote('post_id')} IN ({', '.join(['%s'] * len(ids))}))" for ids in ids_by_kind.values())
    return sql, [value for kind, ids in ids_by_kind.items() for value in (kind, *ids)]


def load_posts(rows, models_by_kind, only=None):
    """The posts behind a page of (kind, pk) rows, in the rows' order: one query per kind, tags
    prefetched; or, with `only` (field names), those fields alone."""
    loaded = {}
    for kind, ids in row_ids(rows).items():
        posts = models_by_kind[kind].objects.filter(pk__in=ids)
        for post in posts.only(*only) if only else posts.prefetch_related("tags"):
            loaded[kind, post.pk] = post
    return [loaded[row["kind"], row["pk"]] for row in rows]


def with_every_tag(posts, names):
    """`posts` narrowed to those carrying every one of the tags named.

    Several names are matched in one subquery that counts each post's matching tags: a join per name
    made PostgreSQL spend seconds planning a query that named twenty."""
    names = set(names)
    if len(names) == 1:
        return posts.filter(tags__tag=names.pop())
    post_id = f"{posts.model.kind}_id"
    links = posts.model.tags.through.objects.filter(tag__tag__in=names).values(post_id)
    matched = links.annotate(matched=Count("tag", distinct=True)).filter(matched=len(names)).values(post_id)
    return posts.filter(pk__in=matched)


def requested_page(request, paginator):
    """The page `?page=` asks for; a missing, malformed or out-of-range page is a 404."""
    try:
        return paginator.page(request.GET.get("page", 1))
    except (PageNotAnInteger, EmptyPage):
        raise Http404("No such page")


# --- The listing store -------------------------------------------------------------------------

@dataclass(frozen=True)
class ListingStore:
    """The models of a listing store: the posts' models by kind, and the three tables kept from them."""

    models: dict
    listed: type
    listed_tag: type
    tally: type
    pair_tally: type = None  # none in migrations before 0013
    month_tally: type = None  # none in migrations before 0019


LISTING_ORDER = ("created", "post_id", "kind")  # newest first, each descending: one backward walk of the index
STORE_BATCH = 2000  # posts a query names at once


def batches(items, size=STORE_BATCH):
    items = iter(items)
    while batch := list(islice(items, size)):
        yield batch


def store_listing(store, ids_by_kind):
    """Rewrite the listing rows of these posts ({kind: pks}) from the posts themselves (a deleted
    post's rows just go), then recount the tallies of every tag and month they had or have now.

    Writers take turns on the tally of every post (a row lock; SQLite has one writer anyway): two
    PostgreSQL transactions rewriting the same post would clash on its row, and each would recount a
    tag without the other's uncommitted rows, one stale count overwriting the other."""
    with transaction.atomic():
        everything = store.tally.objects.select_for_update().filter(tag=None).first()
        touched, pairs, months, change, newest = set(), set(), set(), 0, []
        for kind, ids in ids_by_kind.items():
            for batch in batches(set(ids)):
                rewritten = rewrite_rows(store, kind, batch)
                touched, pairs, months = touched | rewritten.tags, pairs | rewritten.pairs, months | rewritten.months
                change, newest = change + rewritten.change, newest + [rewritten.newest]
        refresh_tallies(store, touched)
        refresh_pair_tallies(store, pairs)
        refresh_month_tallies(store, months)
        move_everything(store, everything, change, newest)


@dataclass
class Rewritten:
    """What rewriting some posts' listing rows touched: the tags and pairs of tags they had or have,
    the UTC months (dates of their first day) their non-draft rows were or are in, how many more
    non-draft rows they have now, and the newest one's date."""

    tags: set
    pairs: set
    months: set
    change: int
    newest: datetime | None


def rewrite_rows(store, kind, ids):
    """Replace the rows of one kind's posts `ids`, copied by the database (INSERT ... SELECT: no row
    passes through Python), and say what that touched (Rewritten)."""
    model, mine = store.models[kind], {"kind": kind, "post_id__in": ids}
    tag_rows_of_mine = lambda: list(store.listed_tag.objects.filter(**mine).values_list("post_id", "tag_id"))
    old_rows, old_months = tag_rows_of_mine(), listed_by_month(store, mine)
    store.listed.objects.filter(**mine).delete()
    store.listed_tag.objects.filter(**mine).delete()
    posts = model.objects.filter(pk__in=ids).order_by().values("pk", "created", "is_draft", kind_=Value(kind))
    insert_from(store.listed, ["post_id", "created", "is_draft", "kind"], posts)
    links = (model.tags.through.objects.filter(**{f"{kind}_id__in": ids}).order_by()
             .values("tag_id", f"{kind}__pk", f"{kind}__created", f"{kind}__is_draft", kind_=Value(kind)))
    insert_from(store.listed_tag, ["tag_id", "post_id", "created", "is_draft", "kind"], links)
    new_rows, new_months = tag_rows_of_mine(), listed_by_month(store, mine)
    return Rewritten(
        tags={tag_id for _, tag_id in old_rows + new_rows},
        pairs=tag_pairs(old_rows) | tag_pairs(new_rows),
        months=set(old_months) | set(new_months),
        change=sum(listed for listed, _ in new_months.values()) - sum(listed for listed, _ in old_months.values()),
        newest=max((newest for _, newest in new_months.values()), default=None),
    )


def listed_by_month(store, condition):
    """{first day of a UTC month: (non-draft rows, the newest one's date)} of the listing rows
    matching `condition` (lookups), in one GROUP BY."""
    months = (store.listed.objects.filter(**condition, is_draft=False).annotate(month=UTCMonth("created"))
              .values_list("month").annotate(listed=Count("pk"), newest=Max("created")).order_by())
    return {month_start(month): (listed, newest) for month, listed, newest in months}


def insert_from(model, columns, rows):
    """INSERT INTO model's table (columns) the rows of a values() queryset, in its column order."""
    sql, params = rows.query.sql_with_params()
    quote = connections[rows.db].ops.quote_name
    with connections[rows.db].cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) {sql}", params)


def refresh_tallies(store, tag_ids):
    """Recount the tallies of these tags (those still existing): a range of the (tag, created) index each."""
    for batch in batches(tag_ids):
        existing = store.listed_tag._meta.get_field("tag").related_model.objects.filter(pk__in=batch)
        counted = {row["tag_id"]: row for row in store.listed_tag.objects.filter(tag_id__in=batch, is_draft=False)
                   .values("tag_id").annotate(listed=Count("*"), newest=Max("created"))}
        tallies = [store.tally(tag_id=pk, listed=counted.get(pk, {}).get("listed", 0), newest=counted.get(pk, {}).get("newest"))
                   for pk in existing.values_list("pk", flat=True)]
        store.tally.objects.bulk_create(tallies, update_conflicts=True, unique_fields=["tag"], update_fields=["listed", "newest"])


def tag_pairs(post_tags):
    """{(tag id, greater tag id)} of every two tags one post carries, from (post id, tag id) rows."""
    by_post = defaultdict(list)
    for post_id, tag_id in post_tags:
        by_post[post_id].append(tag_id)
    return {pair for tag_ids in by_post.values() for pair in combinations(sorted(tag_ids), 2)}


PAIR_BATCH = 500  # first tags whose pairs one query recounts


def refresh_pair_tallies(store, pairs):
    """Recount the shared posts of these (tag id, greater tag id) pairs: for each batch of first tags,
    one join of their rows with the same posts' rows of the greater tags asked for. Every pair in that
    box is recounted, asked for or not, and one no post shares any more goes."""
    if store.pair_tally is None or not pairs:
        return
    by_first = defaultdict(set)
    for first, second in pairs:
        by_first[first].add(second)
    for firsts in batches(by_first, PAIR_BATCH):
        seconds = set().union(*(by_first[first] for first in firsts))
        counted = shared_posts(store, firsts, seconds)
        box = store.pair_tally.objects.filter(tag_id__in=firsts, other_id__in=seconds)
        gone = [pk for pk, first, second in box.values_list("pk", "tag_id", "other_id") if (first, second) not in counted]
        for some in batches(gone):
            store.pair_tally.objects.filter(pk__in=some).delete()
        tallies = [store.pair_tally(tag_id=first, other_id=second, listed=listed) for (first, second), listed in counted.items()]
        store.pair_tally.objects.bulk_create(tallies, batch_size=STORE_BATCH, update_conflicts=True,
                                             unique_fields=["tag", "other"], update_fields=["listed"])


def refresh_month_tallies(store, months):
    """Recount the non-draft rows of these UTC months (dates of their first day) and the newest
    one's date: one GROUP BY over the index range from the first month to the last. Every month in
    that range is recounted, asked for or not, and one left without rows goes."""
    if store.month_tally is None or not months:
        return
    first, last = min(months), max(months)
    (start, _), (_, end) = month_span(first.year, first.month), month_span(last.year, last.month)
    counted = listed_by_month(store, {"created__gte": start, "created__lt": end})
    store.month_tally.objects.filter(month__gte=first, month__lte=last).exclude(month__in=counted).delete()
    tallies = [store.month_tally(month=month, listed=listed, newest=newest) for month, (listed, newest) in counted.items()]
    store.month_tally.objects.bulk_create(tallies, batch_size=STORE_BATCH, update_conflicts=True,
                                          unique_fields=["month"], update_fields=["listed", "newest"])


def shared_posts(store, firsts, seconds, after=None):
    """{(first, second): non-draft posts carrying both} for tags `firsts` and greater tags `seconds`
    (only posts dated after `after`, if given: the scheduled ones)."""
    connection = connections[store.listed_tag.objects.db]
    quote = connection.ops.quote_name
    table, tag_id, kind, post_id = (quote(store.listed_tag._meta.db_table), quote("tag_id"), quote("kind"), quote("post_id"))
    firsts, seconds = list(firsts), list(seconds)
    placeholders = lambda values: ", ".join(["%s"] * len(values))
    scheduled_only = f" AND a.{quote('created')} > %s" if after is not None else ""
    sql = (f"SELECT a.{tag_id}, b.{tag_id}, COUNT(*) FROM {table} AS a JOIN {table} AS b"
           f" ON b.{kind} = a.{kind} AND b.{post_id} = a.{post_id} AND b.{tag_id} > a.{tag_id}"
           f" WHERE a.{tag_id} IN ({placeholders(firsts)}) AND b.{tag_id} IN ({placeholders(seconds)})"
           f" AND NOT a.{quote('is_draft')}{scheduled_only} GROUP BY a.{tag_id}, b.{tag_id}")
    moment = [connection.ops.adapt_datetimefield_value(after)] if after is not None else []
    with connection.cursor() as cursor:
        cursor.execute(sql, [*firsts, *seconds, *moment])
        return {(first, second): listed for first, second, listed in cursor.fetchall()}


def count_pair(store, tags, now):
    """The published posts carrying both of two tags: their pair's tally, less its scheduled posts
    only while one of the tags' own tallies still counts a scheduled post (counts_scheduled)."""
    first, second = sorted(tag.pk for tag in tags)
    listed = pair_tally(store, first, second)
    if not any(counts_scheduled(getattr(tag, "tally", None), now) for tag in tags):
        return listed
    return listed - shared_posts(store, [first], [second], after=now).get((first, second), 0)


def pair_tally(store, first, second):
    """The pair tally of tags `first` < `second` (0 when they never met). (SQL of our own: the ORM
    took 0.3 ms to compile this lookup, a tenth of a combined tag page.)"""
    connection = connections[store.pair_tally.objects.db]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('listed')} FROM {quote(store.pair_tally._meta.db_table)}"
                       f" WHERE {quote('tag_id')} = %s AND {quote('other_id')} = %s", [first, second])
        found = cursor.fetchone()
    return found[0] if found else 0


def move_everything(store, everything, change, newest):
    """Move the tally of every post (tag NULL) by `change` rows, without recounting every post. Its
    `newest` only ever moves later: one left in the future by a deleted or redated post costs a count
    of the scheduled rows (count_everything), never a wrong count. Counted afresh when it is missing."""
    if everything is None:
        totals = store.listed.objects.filter(is_draft=False).aggregate(listed=Count("*"), newest=Max("created"))
        store.tally.objects.create(tag=None, **totals)
        return
    everything.listed += change
    everything.newest = max([moment for moment in [everything.newest, *newest] if moment is not None], default=None)
    everything.save(update_fields=["listed", "newest"])


def tally_count(listed_tag, now, prefix="tally__"):
    """An expression: the published posts of the outer query's tag, from its tally. Only a tag whose
    newest post is still scheduled subtracts its scheduled rows (an index range of future dates); once
    that moment passes every non-draft row is published and the stored count is exact, with no write."""
    scheduled = listed_tag.objects.filter(tag=OuterRef("pk"), is_draft=False, created__gt=now).order_by()
    scheduled = Coalesce(models.Subquery(scheduled.values("tag").annotate(n=Count("*")).values("n")), 0)
    return Case(When(**{f"{prefix}newest__gt": now}, then=F(f"{prefix}listed") - scheduled),
                default=Coalesce(F(f"{prefix}listed"), 0))


def counts_scheduled(tally, now):
    """Whether a Tally row (or None, or a month tally's) still counts a post readers may not see yet."""
    return tally is not None and tally.newest is not None and tally.newest > now


def published_count(store, tally, now):
    """What tally_count() says, for one Tally row already loaded (None: nothing ever carried the tag),
    in Python: for the handful of tags a page names, compiling that expression costs more than the query."""
    if tally is None:
        return 0
    if not counts_scheduled(tally, now):
        return tally.listed
    rows = store.listed.objects.all() if tally.tag_id is None else store.listed_tag.objects.filter(tag_id=tally.tag_id)
    return tally.listed - rows.filter(is_draft=False, created__gt=now).count()


def with_published_counts(store, names, now):
    """The tags of these names as a list, each with its `tally` (if any) and given `post_count` as
    tally_count() would, counted in Python: tag pages and the API name one to three tags."""
    tags = tags_with_tallies(store, names)
    for tag in tags:
        tag.post_count = published_count(store, getattr(tag, "tally", None), now)  # `tag.tally` raises when it has none
    return tags


def tags_with_tallies(store, names):
    """The tags of these names, each with its `tally` (None when nothing ever carried it): one query.
    (SQL of our own, the instances made by the models' from_db(): compiling the ORM's join took
    longer than running it, a sixth of a tag page.)"""
    if not names:
        return []
    tally_field = store.tally._meta.get_field("tag")
    tag_model = tally_field.related_model
    connection = connections[tag_model.objects.db]
    quote = connection.ops.quote_name
    tag_fields = [field.attname for field in tag_model._meta.concrete_fields]
    columns = [f"tag.{quote(tag_model._meta.get_field(name).column)}" for name in tag_fields]
    columns += tally_columns(store, "tally", quote)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {quote(tag_model._meta.db_table)} AS tag"
                       f" LEFT JOIN {quote(store.tally._meta.db_table)} AS tally ON tally.{quote(tally_field.column)} = tag.{quote('id')}"
                       f" WHERE tag.{quote('tag')} IN ({', '.join(['%s'] * len(names))})", list(names))
        found = cursor.fetchall()
    tags = []
    for row in found:
        tag = from_row(tag_model, connection.alias, tag_fields, row[:len(tag_fields)])
        tally_field.remote_field.set_cached_value(tag, tally_from_row(store, row[len(tag_fields):]))  # tag.tally, without a query
        tags.append(tag)
    return tags


def tally_fields(store):
    return [field.attname for field in store.tally._meta.concrete_fields]


def tally_columns(store, alias, quote):
    """The Tally model's columns, in tally_fields() order, prefixed with `alias`."""
    return [f"{alias}.{quote(store.tally._meta.get_field(name).column)}" for name in tally_fields(store)]


def tally_from_row(store, values):
    """A Tally instance of a row's tally columns (tally_columns() order), or None where they are NULL."""
    if values[0] is None:
        return None
    return from_row(store.tally, store.tally.objects.db, tally_fields(store), values)


def count_everything(store, now):
    """How many posts readers may see, from the tally of every post (and its scheduled rows, if any)."""
    connection = connections[store.tally.objects.db]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:  # our own SQL: the ORM's took longer to compile than to run
        cursor.execute(f"SELECT {', '.join(tally_columns(store, 'tally', quote))} FROM {quote(store.tally._meta.db_table)} AS tally"
                       f" WHERE tally.{quote(store.tally._meta.get_field('tag').column)} IS NULL ORDER BY tally.{quote('id')}"
                       f" {connection.ops.limit_offset_sql(0, 1)}")
        found = cursor.fetchone()
    return published_count(store, found and tally_from_row(store, found), now)


def smallest_first(tags):
    """The ids of `tags` (with `post_count`), the one with fewest posts first: its range is walked."""
    return [tag.pk for tag in sorted(tags, key=lambda tag: tag.post_count)]


def posts_beside(store, kind, pk, created, now):
    """[older, newer]: the published posts just before and just after the post (kind, pk, created) in
    the listings' order, of any kind, None at either end; each an unsaved instance of its kind's model
    holding what a link to it needs (created, slug and the title: its `slug_source_field`).

    One query: a step each way along the listing index from a row-value bound, which SQLite and
    PostgreSQL both seek on, each post's slug and title looked up by its kind. (SQL of our own: the
    ORM cannot compare row values, and compiling the two steps' exclusions and the two posts' lookups
    cost it about half of a permalink's CPU time. The published rule, PostQuerySet.published_filter,
    is written here as SQL, not compiled from it as ListingRows does: compiling it took 0.3 ms, and
    its `created <= now` led SQLite to walk the index from now down to the post, 8 ms for a post ten
    years old, instead of seeking to the post.)"""
    connection = connections[store.listed.objects.db]
    quote = connection.ops.quote_name
    scheduled = created > now
    at, now = connection.ops.adapt_datetimefield_value(created), connection.ops.adapt_datetimefield_value(now)
    position = f"({quote('created')}, {quote('post_id')}, {quote('kind')})"
    # A scheduled post (seen by its author) has every published post before it: the bound is now.
    before, before_params = (f"{quote('created')} <= %s", [now]) if scheduled else (f"{position} < (%s, %s, %s)", [at, pk, kind])
    after = f"{position} > (%s, %s, %s) AND {quote('created')} <= %s"
    step = (f"SELECT {quote('kind')}, {quote('post_id')}, {quote('created')} FROM {quote(store.listed._meta.db_table)}"
            f" WHERE NOT {quote('is_draft')} AND {{}} ORDER BY {quote('created')} {{order}}, {quote('post_id')} {{order}}, {quote('kind')} {{order}} LIMIT 1")
    of_its_kind, kind_params = by_kind_sql(store, quote)
    sql = " UNION ALL ".join(f"SELECT {direction}, kind, post_id, created, {of_its_kind} FROM ({step.format(bound, order=order)}) AS {name}"
                             for direction, name, bound, order in ((0, "older", before, "DESC"), (1, "newer", after, "ASC")))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*kind_params, *before_params, *kind_params, at, pk, kind, now])
        found = {direction: post_to_link(store, *row) for direction, *row in cursor.fetchall()}
    return [found.get(0), found.get(1)]


def by_kind_sql(store, quote):
    """(sql, params): the slug and the title of the post of the row (kind, post_id), looked up in its kind's table."""
    columns, params = [], []
    for field in ("slug", None):
        cases = []
        for kind, model in store.models.items():
            column = quote(model._meta.get_field(field or model.slug_source_field).column)
            cases.append(f"WHEN %s THEN (SELECT {column} FROM {quote(model._meta.db_table)} AS post WHERE post.{quote('id')} = post_id)")
            params.append(kind)
        columns.append(f"CASE kind {' '.join(cases)} END")
    return ", ".join(columns), params


def post_to_link(store, kind, pk, created, slug, title):
    """An unsaved post of `kind` with what a link to it needs; `created` as the database gave it."""
    if isinstance(created, str):  # SQLite's text
        created = datetime.fromisoformat(created)
    if created.tzinfo is None:  # stored in UTC
        created = created.replace(tzinfo=dt_timezone.utc)
    model = store.models[kind]
    return model(pk=pk, created=created, slug=slug, **{model.slug_source_field: title})


def listing_rows(store, condition, tags=()):
    """Newest-first {"kind", "pk", "created"} rows of the listing matching `condition` (a Q over
    kind, created and is_draft) and carrying every one of `tags` (with `post_count`): ListingRows."""
    return ListingRows(store, condition, smallest_first(tags))


class ListingRows:
    """Listing rows, sliced, counted and reversed as a queryset of them would be (ListingPaginator,
    the feeds, the API and the random post ask no more): the smallest tag's index range, each other
    tag checked row by row, or every post's range without tags. The condition is compiled by the
    ORM; the query around it is our own, since building and compiling the ORM's (its values, order,
    an Exists per other tag) took a millisecond of a two-tag page's five, more than running it."""

    def __init__(self, store, condition, tag_ids=(), descending=True, where=None):
        self.store, self.condition, self.tag_ids, self.descending = store, condition, list(tag_ids), descending
        self.model = store.listed if not self.tag_ids else store.listed_tag
        self.connection = connections[self.model.objects.db]
        self.where = where or self.compiled_where()
        self.read = []  # (low, high, rows) already read: a tag page's related tags count its first page again

    def compiled_where(self):
        """(sql, params): the condition, the first tag's range and a check for each other tag."""
        first, *others = self.tag_ids or [None]
        sql, params = condition_sql(self.model, self.condition & models.Q(**({} if first is None else {"tag_id": first})), self.connection)
        quote, table = self.connection.ops.quote_name, self.connection.ops.quote_name(self.model._meta.db_table)
        also = (f" AND EXISTS (SELECT 1 FROM {table} AS also WHERE also.{quote('tag_id')} = %s"
                f" AND also.{quote('kind')} = {table}.{quote('kind')} AND also.{quote('post_id')} = {table}.{quote('post_id')})")
        return f"({sql}){also * len(others)}", [*params, *others]

    def reverse(self):
        """The same rows oldest first (the same index walked the other way)."""
        return ListingRows(self.store, self.condition, self.tag_ids, not self.descending, self.where)

    def count(self):
        sql, params = self.where
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {self.connection.ops.quote_name(self.model._meta.db_table)} WHERE {sql}", params)
            return cursor.fetchone()[0]

    def sql(self, low=0, high=None):
        """(sql, params) of the rows from `low` to `high` (kind, post_id, created), in order."""
        quote, where = self.connection.ops.quote_name, self.where
        order = ", ".join(f"{quote(column)} {'DESC' if self.descending else 'ASC'}" for column in LISTING_ORDER)
        return (f"SELECT {quote('kind')}, {quote('post_id')}, {quote('created')} FROM {quote(self.model._meta.db_table)}"
                f" WHERE {where[0]} ORDER BY {order} {self.connection.ops.limit_offset_sql(low, high)}", where[1])

    def __getitem__(self, key):
        if isinstance(key, int):
            found = self[key : key + 1]
            if not found:
                raise IndexError("listing row index out of range")
            return found[0]
        if key.step is not None or (key.start or 0) < 0 or (key.stop is not None and key.stop < 0):
            raise ValueError("a listing is sliced forwards, from a position at or after its start")
        low, high = key.start or 0, key.stop
        if high is not None and high <= low:
            return []
        for read_low, read_high, rows in self.read:
            ended = len(rows) < read_high - read_low  # a short read reached the listing's end
            if read_low <= low and (ended or (high is not None and high <= read_high)):
                return rows[low - read_low : None if high is None else high - read_low]
        sql, params = self.sql(low, high)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchall()
        convert = field_converters(self.model, self.connection.alias, ("created",))["created"]
        rows = [{"kind": kind, "pk": pk, "created": convert(created)} for kind, pk, created in found]
        if high is not None:
            self.read.append((low, high, rows))
        return rows


def tags_on_posts(store, rows, excluded, limit):
    """[(tag name, count)], most found first, then by name, of the tags on the posts of `rows`
    ({"kind", "pk"}) other than the `excluded` tag ids, at most `limit`: one query over the listing
    store's (kind, post_id, tag_id) index. (SQL of our own: the ORM cannot group a UNION's rows.)"""
    ids_by_kind = row_ids(rows)
    if not ids_by_kind:
        return []
    connection = connections[store.listed_tag.objects.db]
    quote = connection.ops.quote_name
    tag_table = quote(store.listed_tag._meta.get_field("tag").related_model._meta.db_table)
    tag_id = quote("tag_id")
    posts, posts_params = of_posts_sql(ids_by_kind, quote)
    not_excluded = f" AND {tag_id} NOT IN ({', '.join(['%s'] * len(excluded))})" if excluded else ""
    # Counted by tag id first, names joined after: a third less work than grouping by name.
    counted = (f"SELECT {tag_id} AS tag_id, COUNT(*) AS n FROM {quote(store.listed_tag._meta.db_table)}"
               f" WHERE ({posts}){not_excluded} GROUP BY {tag_id}")
    sql = (f"SELECT tag.{quote('tag')}, counted.n FROM ({counted}) AS counted JOIN {tag_table} AS tag ON tag.{quote('id')} = counted.tag_id"
           f" ORDER BY counted.n DESC, tag.{quote('tag')} LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*posts_params, *excluded, limit])
        return [tuple(row) for row in cursor.fetchall()]


def paired_tag_counts(store, tag_id, limit, scheduled_after=None):
    """[(tag name, posts shared)] of the tags found most often with one tag, most first, from the pair
    tallies: exact, and bounded by how many tags it meets, not by its posts. The tallies count
    scheduled posts too: with `scheduled_after` (now, when the tag's tally counts_scheduled), the
    pairs of the tag's posts dated after it are taken off (scheduled_pairs). Each tag they name can
    only fall, so the true first `limit` are among the tallies' first `limit` + that many."""
    unseen = scheduled_pairs(store, tag_id, scheduled_after) if scheduled_after is not None else {}
    connection = connections[store.pair_tally.objects.db]
    quote = connection.ops.quote_name
    pairs = quote(store.pair_tally._meta.db_table)
    tag_table = quote(store.pair_tally._meta.get_field("tag").related_model._meta.db_table)
    tag, other, listed = quote("tag_id"), quote("other_id"), quote("listed")
    sql = (f"SELECT paired.id, name.{quote('tag')}, paired.n FROM (SELECT {other} AS id, {listed} AS n FROM {pairs} WHERE {tag} = %s"
           f" UNION ALL SELECT {tag}, {listed} FROM {pairs} WHERE {other} = %s) AS paired"
           f" JOIN {tag_table} AS name ON name.{quote('id')} = paired.id WHERE paired.n > 0"
           f" ORDER BY paired.n DESC, name.{quote('tag')} LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [tag_id, tag_id, limit + len(unseen)])
        counted = [(name, n - unseen.get(other_id, 0)) for other_id, name, n in cursor.fetchall()]
    if unseen:  # a stable sort: ties keep the database's order by name
        counted = sorted((pair for pair in counted if pair[1] > 0), key=lambda pair: -pair[1])
    return counted[:limit]


def scheduled_pairs(store, tag_id, now):
    """{other tag id: posts dated after `now` (not drafts) carrying it and tag `tag_id`}: what the
    pair tallies count that readers cannot see yet. A range of the tag's listing rows (its scheduled
    posts: a handful) and each one's tags."""
    connection = connections[store.listed_tag.objects.db]
    quote = connection.ops.quote_name
    table, tag, kind, post_id = (quote(store.listed_tag._meta.db_table), quote("tag_id"), quote("kind"), quote("post_id"))
    sql = (f"SELECT b.{tag}, COUNT(*) FROM {table} AS a JOIN {table} AS b ON b.{kind} = a.{kind} AND b.{post_id} = a.{post_id}"
           f" AND b.{tag} <> a.{tag} WHERE a.{tag} = %s AND a.{quote('created')} > %s AND NOT a.{quote('is_draft')} GROUP BY b.{tag}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [tag_id, connection.ops.adapt_datetimefield_value(now)])
        return dict(cursor.fetchall())


class UTCMonth(models.Func):
    """A datetime column's UTC month, worked out by the database itself, whose text starts "YYYY-MM":
    Django's ExtractYear and ExtractMonth call a Python function for every row on SQLite, which took
    0.7 s to count an archive of 100,000 posts by month."""

    output_field = models.CharField()

    def as_sqlite(self, compiler, connection, **extra):  # SQLite keeps datetimes as UTC text: "YYYY-MM"
        return self.as_sql(compiler, connection, template="substr(%(expressions)s, 1, 7)", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        # The month's first moment (a timestamp): grouping by to_char's text took three times as long.
        return self.as_sql(compiler, connection, template="date_trunc('month', %(expressions)s AT TIME ZONE 'UTC')", **extra)


def month_start(month):
    """The first day of the month UTCMonth gives: SQLite's "YYYY-MM" text, or PostgreSQL's timestamp."""
    return date(int(str(month)[:4]), int(str(month)[5:7]), 1)


def month_bounds(month):
    """Lookups on `created` for the UTC month whose first day is `month` (its span: dates.month_span)."""
    start, end = month_span(month.year, month.month)
    return {"created__gte": start, "created__lt": end}


def published_by_month(store, now, first=None, last=None):
    """[(year, month, published posts)] of every UTC month with published posts, from the first of
    the month `first` to the month `last` (dates; None: no bound), oldest first: read from the month
    tallies, whatever the blog's size. A month whose newest post is still scheduled (counts_scheduled)
    subtracts its scheduled rows, as published_count() does for a tag (an index range of future
    dates). Read as named rows: model instances cost a millisecond more for twenty years of months."""
    tallies = store.month_tally.objects.order_by("month")
    tallies = tallies.filter(month__gte=first) if first else tallies
    tallies = tallies.filter(month__lte=last) if last else tallies
    months = []
    for tally in tallies.values_list("month", "listed", "newest", named=True):
        listed = tally.listed
        if counts_scheduled(tally, now):
            listed -= store.listed.objects.filter(is_draft=False, created__gt=now, **month_bounds(tally.month)).count()
        if listed:
            months.append((tally.month.year, tally.month.month, listed))
    return months


class ListingPaginator(Paginator):
    """Pages of listing_rows(), counted by `count()` (a tally, where there is one) instead of the rows.

    A page past the middle is read from the oldest end, in the index's other direction, and turned
    round: OFFSET walks every row before the page, so the last page of a tag with 4,800 posts walked
    4,800 index entries (and of two tags, every row of the smaller one); now it walks at most half."""

    def __init__(self, rows, per_page, count=None):
        super().__init__(rows, per_page)
        self.count_rows = count or rows.count

    @cached_property
    def count(self):
        return self.count_rows()

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        if bottom <= self.count - top:
            # The last page asks for as many rows as a page can hold: the same rows, and a read that
            # ends short tells ListingRows where the listing ends (a tag page's related tags ask again).
            high = bottom + self.per_page + self.orphans if top == self.count else top
            return self._get_page(self.object_list[bottom:high], number, self)
        from_the_end = self.object_list.reverse()[self.count - top : self.count - bottom]
        return self._get_page(list(from_the_end)[::-1], number, self)
