"""Search: the query language, ranked full-text search over every kind, and the facets beside it.

The query language: words, "quoted phrases", -negation and key:value filters (`tag:django
type:blogmark year:2024 from:2023-01-01 to:2023-12-31`); it never fails, what makes no sense becomes
a note. A `Search` runs one query over `{kind: queryset}`: FTS5 (ranked by bm25) on SQLite,
tsvector (SearchRank) on PostgreSQL, both reading the index tables of `search_index`. Each kind's
model says the names its type: filter accepts (`search_names`) and its label (`verbose_name_plural`).
The search page reads a bounded number of matches whatever the blog's size (`Search.page_rows`).
"""

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from functools import partial
from urllib.parse import urlencode

from django.db import connection, models
from django.db.models import F, Q, Value
from django.db.models.expressions import RawSQL
from django.utils.functional import cached_property

from .listing import count_mixed_posts, row_ids, union_all, with_every_tag, with_kind
from .search_index import ID_MASK, POSTGRES_SEARCH_CONFIG, SEARCH_WEIGHTS, index_table, tag_token

MAX_QUERY_LENGTH = 500  # longer queries are cut here: nobody types more, and it bounds the SQL
MAX_QUERY_TERMS = 20
FILTER_KEYS = {"tag", "type", "year", "from", "to"}
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
    type_names: dict = field(default_factory=dict)  # what type: accepts: {"links": "blogmark", ...}
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
    elif term.key == "type" and value in parsed.type_names:
        (parsed.excluded_kinds if term.negated else parsed.kinds).append(parsed.type_names[value])
    elif term.key == "type":
        *others, last = dict.fromkeys(parsed.type_names.values())
        parsed.notes.append(f"Ignored {term}: the types are {', '.join(others)} and {last}.")
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


def parse_query(q, type_names):
    """Parse the search box: `tag:django type:blogmark year:2024 -tag:python "exact phrase" from:2023-01-01`.
    `type_names` maps what type: accepts to a kind: {"entries": "entry", "links": "blogmark", ...}."""
    parsed = ParsedQuery(type_names=type_names)
    for term in tokenize_query(q or ""):
        if term.key:
            apply_filter(parsed, term)
        elif WORD_CHARACTER.search(term.text):
            (parsed.excluded_words if term.negated else parsed.words).append(term)
        else:
            continue  # only punctuation: nothing to search for, and left out of the query kept in the box
        parsed.terms.append(term)
    return parsed



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
            queryset = with_every_tag(queryset, parsed.tags)
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


def fts5_required(parsed):
    """FTS5: every word, and every tag: each is one token of the index's `tagged` column, so FTS5 hands
    out only the posts carrying them, where a filter after it would pass over the others (a common
    word within a big tag: thousands of matches, a few percent of them tagged)."""
    return " AND ".join([fts5_query(parsed.words, "AND"), *(f'tagged : "{tag_token(name)}"' for name in parsed.tags)])


def sqlite_match(kind, queryset, parsed, by_date=True):
    """Posts whose index row has every word and no excluded word: a subquery, fit for any query.

    `by_date`: a unary + keeps SQLite from looking up every match by id and sorting them all (a common
    word: tens of thousands); it walks the posts newest first by the `created` index, checks each
    against the matches, and stops once a page (or the sample) is full. Without it, SQLite starts
    from the matches: quicker when they are few, as the walk would pass many posts to find each."""
    index = index_table(queryset.model)
    matches = f"SELECT rowid & {ID_MASK} FROM {index} WHERE {index} MATCH %s"
    if parsed.words and by_date:
        queryset = queryset.extra(where=[f"+{queryset.model._meta.db_table}.id IN ({matches})"], params=[fts5_required(parsed)])
    elif parsed.words:
        queryset = queryset.filter(pk__in=RawSQL(matches, [fts5_required(parsed)]))
    if parsed.excluded_words:
        queryset = queryset.exclude(pk__in=RawSQL(matches, [fts5_query(parsed.excluded_words, "OR")]))
    return queryset


def sqlite_ranked(kind, queryset, parsed):
    """Posts joined to their matching index rows, ranked by bm25 (negated: higher is better, as on PostgreSQL).

    The join lets FTS5 find the matches and rank them in one pass; Django's extra() is the ORM's way to
    join a table that has no model. The join is on the id inside the index key (`rowid & ID_MASK`),
    which SQLite cannot look the index up by: it runs the MATCH once and looks the posts up by id,
    rather than looking the index up once per post, which would grow with the blog.
    """
    index = index_table(queryset.model)
    return queryset.extra(
        select={"rank": bm25_sql(index)},
        tables=[index],
        where=[index_join_sql(index, f"{queryset.model._meta.db_table}.id"), f"{index} MATCH %s"],
        params=[fts5_match(parsed)],
    )


def bm25_sql(index):
    """A match's rank: FTS5's bm25 with the fields' weights, negated (higher is better, as on PostgreSQL)."""
    return f"-bm25({index}, {', '.join(str(weight) for weight in SEARCH_WEIGHTS)})"


def index_join_sql(index, post_id):
    """The condition joining a post (its id column `post_id`) to its index row: the id in the row's key."""
    return f"{post_id} = ({index}.rowid & {ID_MASK})"


def fts5_match(parsed):
    """The FTS5 query of every word and tag (fts5_required) and none of the excluded words."""
    match = fts5_required(parsed)
    if parsed.excluded_words:
        match = f"({match}) NOT ({fts5_query(parsed.excluded_words, 'OR')})"
    return match


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


def postgres_match(kind, queryset, parsed, by_date=True):
    """Posts whose search document matches: a GIN index scan of the kind's search table."""
    if not (parsed.words or parsed.excluded_words):
        return queryset
    query, params = as_sql(postgres_query(parsed), queryset)
    matches = f"SELECT post_id FROM {index_table(queryset.model)} WHERE document @@ {query}"
    return queryset.filter(pk__in=RawSQL(matches, params))


def postgres_ranked(kind, queryset, parsed):
    """Matching posts ranked by SearchRank of their weighted document (looked up for the matches only)."""
    from django.contrib.postgres.search import SearchRank, SearchVectorField

    document = RawSQL(
        f"SELECT document FROM {index_table(queryset.model)} WHERE post_id = {queryset.model._meta.db_table}.id",
        [],
        output_field=SearchVectorField(),
    )
    return postgres_match(kind, queryset, parsed).annotate(rank=SearchRank(document, postgres_query(parsed)))


def index_matches_sql(queryset, parsed):
    """(sql, params): the ids of the posts of the queryset's kind whose index row has the words (and,
    on SQLite, the tags), read from the index alone (drafts and other filters not applied)."""
    index = index_table(queryset.model)
    if connection.vendor == "sqlite":
        return f"SELECT rowid & {ID_MASK} FROM {index} WHERE {index} MATCH %s", [fts5_match(parsed)]
    query, params = as_sql(postgres_query(parsed), queryset)
    return f"SELECT post_id FROM {index} WHERE document @@ {query}", params


def index_match_count(filtered, parsed, limit, newest=None):
    """How many index rows of the kinds searched have the words, counted up to `limit` + 1 and no
    further: the index alone, so it costs little for any word at any size. With `newest` (SQLite):
    (that count, the index key of the `newest`-th newest match or None when there are fewer), in
    the same query (newest_key_sql)."""
    parts = [index_matches_sql(queryset, parsed) for queryset in filtered.values()]
    if not parts:
        return 0 if newest is None else (0, None)
    sql = " UNION ALL ".join(part for part, _ in parts)
    count, params = f"SELECT COUNT(*) FROM ({sql} LIMIT %s) AS found", [*(p for _, ps in parts for p in ps), limit + 1]
    with connection.cursor() as cursor:
        if newest is None:
            cursor.execute(count, params)
            return cursor.fetchone()[0]
        key, key_params = newest_key_sql(filtered, parsed, newest)
        cursor.execute(f"SELECT ({count}), ({key})", [*params, *key_params])
        return tuple(cursor.fetchone())


def matching_posts(filtered, parsed, by_date=True):
    """Each kind's posts (already filtered) that match the text: {kind: queryset}. `by_date`: read
    newest first through the date index (SQLite; see sqlite_match)."""
    match = sqlite_match if connection.vendor == "sqlite" else postgres_match
    return {kind: match(kind, queryset, parsed, by_date) for kind, queryset in filtered.items()}


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
        rows.append(with_kind(queryset, kind).values("kind", "pk", "created", "rank"))
    return union_all(rows).order_by("-rank", "-created", "-pk") if rows else None


# A search page reads a bounded number of matches whatever the blog's size: every match, ranked, when
# the index holds few (a rare word: bm25 for each is cheap), else the newest SAMPLE_SIZE, found from
# the matches while they number up to DATE_WALK_FROM, and past that by walking the posts newest first
# (a word in half the posts: a walk stops soon; one in 3% would pass 30 posts for each match).
SAMPLE_SIZE = 1000
RANKED_LIMIT = 2000
DATE_WALK_FROM = 10000


# On SQLite the newest matches come straight off the index, whose keys are in date order: the
# SAMPLE_SIZE + 1 + SAMPLE_MARGIN newest index rows are candidates (the margin for drafts, scheduled
# posts and filters to drop), and the posts among them that pass are the sample.
SAMPLE_MARGIN = 200


def candidate_count():
    return SAMPLE_SIZE + 1 + SAMPLE_MARGIN


def newest_key_sql(filtered, parsed, position):
    """(sql, params) for the index key of the `position`-th newest match over the kinds searched
    (drafts and filters but tags not applied; NULL when there are fewer). FTS5 stops each kind's
    read at the LIMIT, whatever the blog's size."""
    parts = [f"SELECT * FROM (SELECT rowid AS key FROM {index} WHERE {index} MATCH %s ORDER BY rowid DESC LIMIT %s)"
             for index in (index_table(queryset.model) for queryset in filtered.values())]
    params = [param for _ in parts for param in (fts5_match(parsed), position)]
    return f"SELECT key FROM ({' UNION ALL '.join(parts)}) ORDER BY key DESC LIMIT 1 OFFSET %s", [*params, position - 1]


def sqlite_newest_rows(filtered, parsed, boundary, more):
    """The rows of the SAMPLE_SIZE + 1 newest matches (every match when there are fewer), read from
    the index's newest candidates: those with a key from `boundary` on (the key of the SAMPLE_SIZE +
    1 + SAMPLE_MARGIN-th newest match; None: every match), `more` saying whether there are older
    ones. None when drafts and filters leave too few candidates to be sure, and the caller must walk
    the dates instead (a year: filter on a common word can; a tag: filter is in the index's query).

    A match outside the candidates has a key below every candidate's, so it is older (to the minute:
    the key's precision) than every row returned. The query around each kind's posts is our own
    (kind_rows_sql): building and compiling the ORM's union of three filtered kinds took 1.2 ms."""
    parts = []
    for kind, queryset in filtered.items():
        candidates, candidate_params = index_matches_sql(queryset, parsed)
        if boundary is not None:
            candidates, candidate_params = f"{candidates} AND rowid >= %s", [*candidate_params, boundary]
        parts.append(kind_rows_sql(kind, queryset, ids=(candidates, candidate_params)))
    rows = read_newest(parts, SAMPLE_SIZE + 1)
    return rows if len(rows) > SAMPLE_SIZE or not more else None


def kind_rows_sql(kind, queryset, ids=None, newest=None):
    """(sql, params): the posts of `queryset` (one kind's, filtered) as (kind, pk, created) rows:
    those whose id the subquery `ids` ((sql, params)) gives, or its `newest` newest, or all."""
    posts, params = posts_sql(queryset, newest)
    sql, params = f"SELECT %s AS kind, posts.post_pk AS pk, posts.post_created AS created FROM ({posts}) AS posts", [kind, *params]
    return (f"{sql} WHERE posts.post_pk IN ({ids[0]})", [*params, *ids[1]]) if ids else (sql, params)


def posts_sql(queryset, newest=None):
    """(sql, params): the posts of `queryset` as (post_pk, post_created), for our own SQL around it:
    the ORM compiles only the queryset itself (its filters), not the query the page needs. With
    `newest`, only its `newest` newest: a LIMIT the database stops at, walking the date index."""
    posts = queryset.values(post_pk=F("pk"), post_created=F("created"))
    posts = posts.order_by("-created", "-pk")[:newest] if newest else posts.order_by()
    return posts.query.sql_with_params()


def read_newest(parts, limit):
    """The `limit` newest rows, in the listings' order, of the (kind, pk, created) rows of `parts`
    ([(sql, params)], kind_rows_sql's), joined with UNION ALL."""
    if not parts:
        return []
    sql = f"{' UNION ALL '.join(sql for sql, _ in parts)} ORDER BY created DESC, pk DESC, kind DESC LIMIT %s"
    return read_rows(sql, [*(param for _, params in parts for param in params), limit])


def newest_rows(querysets, limit):
    """The (kind, pk, created) rows of the `limit` newest posts of `{kind: queryset}`, in the listings'
    order: each kind's own `limit` newest in a subquery the database stops at its LIMIT (walking the
    date index, or reading the few matches when they are few: PostgreSQL's planner picks per kind),
    then the newest of those. Sorting every match of a word in half the posts before the first took
    PostgreSQL 127 ms at 100,000 posts, this 6 ms; the ORM puts no LIMIT in a UNION's parts on SQLite."""
    return read_newest([kind_rows_sql(kind, queryset, newest=limit) for kind, queryset in querysets.items()], limit)


def sqlite_ranked_rows(filtered, parsed):
    """The search page's rows of every match (at most RANKED_LIMIT of them), best first, as
    ranked_rows() orders them: sqlite_ranked's join and rank in our own SQL around each kind's
    posts, for the reason sqlite_newest_rows gives."""
    parts, params = [], []
    for kind, queryset in filtered.items():
        index = index_table(queryset.model)
        posts, posts_params = posts_sql(queryset)
        parts.append(f"SELECT %s AS kind, posts.post_pk AS pk, posts.post_created AS created, {bm25_sql(index)} AS rank"
                     f" FROM {index} JOIN ({posts}) AS posts ON {index_join_sql(index, 'posts.post_pk')} WHERE {index} MATCH %s")
        params += [kind, *posts_params, fts5_match(parsed)]
    return read_rows(f"{' UNION ALL '.join(parts)} ORDER BY rank DESC, created DESC, pk DESC", params)


def fetch_rows(rows):
    """A query's (kind, pk, created, ...) rows as dicts (read_rows)."""
    return read_rows(*rows.query.sql_with_params())


def read_rows(sql, params):
    """The (kind, pk, created, ...) rows of `sql` as dicts, read past the ORM's converters: parsing a
    thousand dates (SQLite keeps text) cost more than the query. `created` stays as the database
    gives it; on SQLite as its text (`|| ''` leaves the column without the declared type that makes
    Python's sqlite3 parse it), which keeps the query's order as a subquery's ORDER BY does there."""
    if connection.vendor == "sqlite":
        sql = f"SELECT kind, pk, created || '' FROM ({sql})"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [{"kind": kind, "pk": pk, "created": created} for kind, pk, created, *_ in cursor.fetchall()]


def utc_year(created):
    """The UTC year of `created` as fetch_rows() gives it: SQLite's UTC text, or PostgreSQL's datetime."""
    if isinstance(created, str):
        return int(created[:4])
    if created.tzinfo is None:  # sqlite3's own timestamp converter: UTC, naive (astimezone would read it as local)
        return created.year
    return created.astimezone(dt_timezone.utc).year


@dataclass
class PageRows:
    """What a search page lists, counts and facets: (kind, pk, created) rows."""

    rows: list
    complete: bool  # every match is here; else the newest SAMPLE_SIZE of them
    ranked: bool  # best match first; else newest first


class SearchResults:
    """The ranked rows of a search, as `paginate` and slicing want them; counting them skips the
    ranking (which the queryset's own count() would repeat), or uses a count already known."""

    def __init__(self, rows, matching, count=None):
        self.rows, self.matching, self.known_count = rows, matching, count

    def count(self):
        if self.known_count is None:
            self.known_count = count_mixed_posts(self.matching)  # finds the matches, does not rank them
        return self.known_count

    def __getitem__(self, key):
        return self.rows[key] if self.rows is not None else []

    def __iter__(self):
        return iter(self.rows if self.rows is not None else [])



FACET_TAGS = 15


@dataclass
class Facet:
    """One value to narrow a search by: its label, how many matches have it, and the query that
    adds it (or, when the query already has it, the query without it)."""

    label: str
    count: int
    q: str
    active: bool

    @property
    def href(self):
        """The search page's link to that query (first page). Made here, not with {% querystring %}:
        a page has up to forty facets, and the tag's QueryDict copies cost half a millisecond."""
        return "?" + urlencode({"q": self.q})


def facet(parsed, key, value, label, count):
    term = Term(str(value), key=key)
    active = term in parsed.terms
    return Facet(label, count, parsed.without(term) if active else parsed.with_filter(key, value), active)


def top_tags(ids_by_kind, models):
    """[(tag, count)] of the tags the posts `ids_by_kind` ({kind: [pk]}) use most, at most FACET_TAGS, in one query.

    Adding the kinds' tag links up needs a GROUP BY over their UNION ALL, which the ORM cannot write."""
    # Written as SQL: the ORM spent ~30 microseconds on each of a thousand ids (integers from the database).
    links = " UNION ALL ".join(
        f"SELECT tag_id FROM {models[kind].tags.through._meta.db_table}"
        f" WHERE {kind}_id IN ({', '.join(str(int(pk)) for pk in ids)})"
        for kind, ids in ids_by_kind.items() if ids
    )
    if not links:
        return []
    tag_table = next(iter(models.values())).tags.field.related_model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tag.tag, top.n FROM (SELECT tag_id, COUNT(*) AS n FROM ({links}) AS link GROUP BY tag_id"
            f" ORDER BY n DESC, tag_id LIMIT %s) AS top JOIN {tag_table} AS tag ON tag.id = top.tag_id"
            " ORDER BY top.n DESC, tag.tag",
            [FACET_TAGS],
        )
        return cursor.fetchall()


def search_facets(rows, parsed, labels, models):
    """Facets for the page: {"type": [...], "year": [...], "tag": [...]}, each a list of Facets, counted
    over `rows` ((kind, pk, created) of the matches, or of the newest SAMPLE_SIZE of them).
    `labels` names each kind: {"entry": "Entries", ...}."""
    by_kind = Counter(row["kind"] for row in rows)
    by_year = Counter(utc_year(row["created"]) for row in rows)  # UTC, as year: filters
    ids_by_kind = row_ids(rows)
    return {
        "type": [facet(parsed, "type", kind, label, by_kind[kind]) for kind, label in labels.items() if by_kind[kind]],
        # year:0001, as the search box wants a year (four digits), for the posts of year 1
        "year": [facet(parsed, "year", f"{year:04d}", str(year), count) for year, count in sorted(by_year.items(), reverse=True)],
        "tag": [facet(parsed, "tag", tag, tag, count) for tag, count in top_tags(ids_by_kind, models)],
    }



# "Did you mean": a query that finds nothing is compared with the tag names and the words of the
# newest posts' titles (a bounded vocabulary, read only when a search finds nothing). A tag is only
# suggested once a published post is found to carry it, so a draft's tags stay unknown.
VOCABULARY_POSTS = 2000  # newest posts per kind whose titles give words
SUGGESTION_CUTOFF = 0.75  # difflib's similarity ratio, 0 to 1
SUGGESTION_CANDIDATES = 5


def title_words(querysets):
    """Lower-case words of the titles (or sources) of the newest VOCABULARY_POSTS posts of each kind."""
    words = set()
    for queryset in querysets.values():
        title, _, source = queryset.model.search_fields
        for text in queryset.order_by("-created").values_list(title or source, flat=True)[:VOCABULARY_POSTS]:
            words.update(word.lower() for word in re.findall(r"[^\W_]{3,}", text))
    return words


def carries_tag(querysets, name):
    """True if a post of `querysets` carries the tag `name` (one indexed lookup per kind at most)."""
    return any(queryset.filter(tags__tag=name).exists() for queryset in querysets.values())


def closest(word, vocabulary, acceptable):
    """The word of `vocabulary` closest to `word` that `acceptable(word)` allows, or None if `word`
    is there already or nothing is close."""
    if word in vocabulary:
        return None
    candidates = difflib.get_close_matches(word, vocabulary, n=SUGGESTION_CANDIDATES, cutoff=SUGGESTION_CUTOFF)
    return next((candidate for candidate in candidates if acceptable(candidate)), None)


def suggested_query(parsed, words, tag_names, is_used_tag):
    """The query text with misspelt words and tag: filters replaced by close ones, or None. `words`
    come from published titles; a tag name is suggested only if `is_used_tag(name)`."""
    replaced = {}
    for term in parsed.terms:
        if term.key == "tag":
            better = closest(term.text.lower(), tag_names, is_used_tag)
        elif not term.key and not term.quoted:
            better = closest(term.text.lower(), words | tag_names, lambda word: word in words or is_used_tag(word))
        else:
            better = None
        if better:
            replaced[term] = Term(better, key=term.key, negated=term.negated)
    return " ".join(str(replaced.get(term, term)) for term in parsed.terms) if replaced else None


class Search:
    """One search of `{kind: queryset}` with the query language, for the search page and the API alike.

    `models` are every kind of post (type: filters name them even when `querysets` leaves some out).
    `results()` are (kind, pk, created, rank) rows, best first (newest first without words), to
    paginate or slice and then hand to `load_posts`; `facets()` narrow the search by kind, year and tag.
    """

    def __init__(self, q, querysets, models):
        self.models, self.querysets = models, querysets
        type_names = {name: kind for kind, model in models.items() for name in model.search_names}
        self.parsed = parse_query(q, type_names)
        self.filtered = apply_search_filters(querysets, self.parsed)

    @cached_property
    def index_reading(self):
        """(How many index rows have the words (and on SQLite the tags; drafts and other filters not
        applied), counted up to DATE_WALK_FROM + 1 (or the candidates + 1) on SQLite, which chooses
        its way to the matches by it (sqlite_match), and up to RANKED_LIMIT + 1 on PostgreSQL, whose
        planner chooses its own (newest_rows); on SQLite the key of the candidate_count()-th newest
        of them, else None), in one query; (None, None) without words. Counting a word in half the
        posts to 10,001 took PostgreSQL 51 ms at 100,000 posts."""
        if not self.parsed.words:
            return None, None
        if connection.vendor == "sqlite":
            limit = max(DATE_WALK_FROM, candidate_count())
            return index_match_count(self.filtered, self.parsed, limit, newest=candidate_count())
        return index_match_count(self.filtered, self.parsed, RANKED_LIMIT), None

    @property
    def index_matches(self):
        return self.index_reading[0]

    @cached_property
    def matching(self):
        """{kind: queryset} of the matching posts, read newest first by date when the matches are many."""
        by_date = self.index_matches is None or self.index_matches > DATE_WALK_FROM
        return matching_posts(self.filtered, self.parsed, by_date)

    def results(self, count=None):
        """Every match, ranked (newest first without words), counted exactly: for the API."""
        return SearchResults(ranked_rows(self.filtered, self.parsed), self.matching, count)

    @cached_property
    def page_rows(self):
        """The search page's PageRows: a bounded read (see SAMPLE_SIZE), two queries."""
        if not self.filtered:
            return PageRows([], complete=True, ranked=False)
        if self.index_matches is not None and self.index_matches <= RANKED_LIMIT:
            if connection.vendor == "sqlite":
                return PageRows(sqlite_ranked_rows(self.filtered, self.parsed), complete=True, ranked=True)
            return PageRows(fetch_rows(ranked_rows(self.filtered, self.parsed)), complete=True, ranked=True)
        newest = None
        if connection.vendor == "sqlite" and self.parsed.words:
            newest = sqlite_newest_rows(self.filtered, self.parsed, self.index_reading[1], self.index_matches > candidate_count())
        if newest is None:
            newest = newest_rows(self.matching, SAMPLE_SIZE + 1)
        return PageRows(newest[:SAMPLE_SIZE], complete=len(newest) <= SAMPLE_SIZE, ranked=False)

    def facets(self):
        """Type, year and tag facets of the page's rows (of the newest SAMPLE_SIZE when there are more)."""
        labels = {kind: str(model._meta.verbose_name_plural).capitalize() for kind, model in self.models.items()}
        return search_facets(self.page_rows.rows, self.parsed, labels, self.models)

    def did_you_mean(self):
        """A query like this one with misspelt words or tags replaced by ones the blog uses, or None.
        Reads every tag name and thousands of titles: ask only when a search finds nothing."""
        tag_model = next(iter(self.models.values())).tags.field.related_model
        tag_names = set(tag_model.objects.values_list("tag", flat=True))
        return suggested_query(self.parsed, title_words(self.querysets), tag_names, partial(carries_tag, self.querysets))
