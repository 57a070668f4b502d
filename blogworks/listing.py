"""Listings: posts of several kinds as one newest-first list, paginated, loaded and counted.

Each kind of post has its own table, so a list that mixes them is a UNION ALL of (kind, pk, created)
rows, one SELECT per kind: the database sorts and slices it, and only the page's posts are loaded,
one query per kind. Every function takes `{kind: queryset}`; none knows the models by name.
"""

from collections import Counter, defaultdict

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import models
from django.db.models import Count, Value
from django.http import Http404
from django.utils.functional import cached_property


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
    # LIMIT/OFFSET pages could repeat one post and skip another.
    return rows.order_by("-created", "-pk", "kind")


def count_mixed_posts(querysets):
    """How many rows mixed_posts(querysets) has, in one query over the posts' ids alone: each kind's
    ids can come from an index, where counting the (kind, pk, created) rows reads every table row."""
    ids = union_all([queryset.order_by().values("pk") for queryset in querysets.values()])
    return ids.count() if ids is not None else 0


def load_posts(rows, models_by_kind):
    """The posts behind a page of (kind, pk) rows, in the rows' order: one query per kind, tags prefetched."""
    ids_by_kind = defaultdict(list)
    for row in rows:
        ids_by_kind[row["kind"]].append(row["pk"])
    loaded = {}
    for kind, ids in ids_by_kind.items():
        for post in models_by_kind[kind].objects.filter(pk__in=ids).prefetch_related("tags"):
            loaded[kind, post.pk] = post
    return [loaded[row["kind"], row["pk"]] for row in rows]


def summed_counts(querysets):
    """Add up per-kind (key..., count) rows into one Counter, in one UNION query."""
    totals = Counter()
    for *key, count in union_all(querysets) or ():
        totals[tuple(key)] += count
    return totals


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


class MixedPostsPaginator(Paginator):
    """Pages of mixed_posts(querysets), counted with count_mixed_posts()."""

    def __init__(self, querysets, per_page):
        super().__init__(mixed_posts(querysets), per_page)
        self.querysets = querysets

    @cached_property
    def count(self):
        return count_mixed_posts(self.querysets)


def requested_page(request, paginator):
    """The page `?page=` asks for; a missing, malformed or out-of-range page is a 404."""
    try:
        return paginator.page(request.GET.get("page", 1))
    except (PageNotAnInteger, EmptyPage):
        raise Http404("No such page")
