"""The search index: one table per kind of post, kept in step with every write by database triggers.

One index table per kind (linkblog_entry_search, ...), one row per post, filled and kept in step by
triggers on the post tables, their tag tables and the tag table: the admin, the API, imports with
bulk_create or raw SQL alike. On SQLite it is an FTS5 table (columns title, body, source, tags, and
`tagged`, which holds each tag name as one token (`tag_token`) so that a search within a tag is one
FTS5 query; Porter stemmer) whose rowid is the post's *index key*: the minute it was created, then its id
(`index_key_sql`; `rowid & ID_MASK` is the id). FTS5 hands out matches in rowid order and stops at a
LIMIT, so "the newest thousand matches" reads a thousand doclist entries whatever the blog's size,
where with rowid = id it would be newest-id order, which an imported archive breaks. On PostgreSQL it is a table of (post_id, document tsvector) with a GIN
index; the document weighs titles A, bodies B, sources and tag names C.

What is indexed is described by `IndexedKind`s: made from the models at run time
(`IndexedKind.of(Entry)`), and frozen in migration 0004, which installs the index. To alter a column
SQLite's schema editor rebuilds the table, and a rebuild fails while other tables' triggers name it;
so on SQLite the triggers are dropped before any migration runs and put back (the index refilled)
after it (`pause_search_index`, `resume_search_index`). PostgreSQL alters tables in place.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db import connections

SEARCH_WEIGHTS = (10.0, 4.0, 2.0, 2.0, 0.0)  # SQLite bm25 column weights: title, body, source, tags; tagged (a filter)
POSTGRES_SEARCH_CONFIG = "english"  # stems like SQLite's porter tokenizer


@dataclass(frozen=True)
class IndexedKind:
    """What the index needs to know of one kind of post: its tables and the columns it searches."""

    kind: str  # "entry": its tag table's column is entry_id
    table: str  # "linkblog_entry"; its tags are in linkblog_entry_tags
    fields: tuple  # the title, body and source columns, "" where the kind has none
    tag_table: str  # "linkblog_tag"

    @classmethod
    def of(cls, model):
        """The description of a post model with `kind`, `search_fields` and a `tags` many-to-many."""
        tag_model = model.tags.field.remote_field.model  # the class itself: usable before the app registry is ready
        return cls(model.kind, model._meta.db_table, tuple(model.search_fields), tag_model._meta.db_table)

    @property
    def index(self):
        return f"{self.table}_search"


def index_table(model):
    """The name of a post model's index table."""
    return f"{model._meta.db_table}_search"


SEARCH_TOKENIZER = "porter unicode61 remove_diacritics 2"


# A tag as one token of the `tagged` column: "t" and the hex of its UTF-8 bytes, A and E written G and H.
# Without a vowel, the Porter stemmer leaves it whole. Words are searched in every column (a column
# filter makes FTS5 read positions: counting the entries with a word in half the posts took 1.1 ms
# instead of 0.7 at 100,000 posts), so typing a tag's token as a word finds that tag's posts; nobody
# types "t707974686F6H".
def tag_token(name):
    return "t" + name.encode().hex().upper().replace("A", "G").replace("E", "H")


def tag_token_sql(name):
    """SQL for tag_token() of SQL for a tag's name (SQLite's hex() gives the UTF-8 bytes, upper case)."""
    return f"'t' || replace(replace(hex({name}), 'A', 'G'), 'E', 'H')"

# SQLite index key: (minutes since 1970 << ID_BITS) | post id. Year 1 to 9999 fit in 64 bits with 30
# bits of id (a billion posts of a kind); posts of the same minute follow each other by id.
ID_BITS = 30
ID_MASK = (1 << ID_BITS) - 1


def index_key_sql(created, post_id):
    """SQL for the index key of a post from SQL for its `created` (SQLite's UTC text) and its id."""
    return f"(((CAST(strftime('%s', {created}) AS INTEGER) / 60) << {ID_BITS}) | {post_id})"


def keys_of_posts_sql(spec, post_ids):
    """SQL for the index keys of the posts whose ids `post_ids` (an SQL expression) gives."""
    return f"SELECT {index_key_sql('created', 'id')} FROM {spec.table} WHERE id IN ({post_ids})"


def search_index_insert_sql(spec, post_ids):
    """SQL that indexes the posts whose ids `post_ids` (an SQL expression) gives: text, tag names
    and tag tokens."""
    table, index, kind = spec.table, spec.index, spec.kind
    columns = ", ".join(f"post.{name}" if name else "''" for name in spec.fields)
    of_tags = lambda value: (
        f"(SELECT group_concat({value}, ' ') FROM {table}_tags AS link"
        f" JOIN {spec.tag_table} AS tag ON tag.id = link.tag_id WHERE link.{kind}_id = post.id)"
    )
    return (
        f"INSERT INTO {index} (rowid, title, body, source, tags, tagged) "
        f"SELECT {index_key_sql('post.created', 'post.id')}, {columns}, {of_tags('tag.tag')}, {of_tags(tag_token_sql('tag.tag'))}"
        f" FROM {table} AS post WHERE post.id IN ({post_ids});"
    )


def search_index_delete_sql(spec, post_ids):
    """SQL that removes the index rows of the posts whose ids `post_ids` gives, found by their
    current keys (a trigger that changes `created` deletes by the old key itself)."""
    return f"DELETE FROM {spec.index} WHERE rowid IN ({keys_of_posts_sql(spec, post_ids)});"


def search_index_row_sql(spec, post_ids):
    """SQL that rewrites the index rows of the posts whose ids `post_ids` gives."""
    return f"{search_index_delete_sql(spec, post_ids)} {search_index_insert_sql(spec, post_ids)}"


def search_index_triggers(spec):
    """{trigger name: SQL} for one kind's index."""
    table, index, kind = spec.table, spec.index, spec.kind
    text_columns = ", ".join(name for name in spec.fields if name)
    tagged = f"SELECT {kind}_id FROM {table}_tags WHERE tag_id = new.id"
    old_row = f"DELETE FROM {index} WHERE rowid = {index_key_sql('old.created', 'old.id')};"
    too_big = f"SELECT RAISE(ABORT, 'a post id above {ID_MASK} cannot be indexed for search') WHERE new.id > {ID_MASK};"
    body = {
        "post_insert": f"AFTER INSERT ON {table} BEGIN {too_big} {search_index_insert_sql(spec, 'new.id')} END",
        "post_update": f"AFTER UPDATE OF {text_columns}, created ON {table} BEGIN {old_row} {search_index_insert_sql(spec, 'new.id')} END",
        "post_delete": f"AFTER DELETE ON {table} BEGIN {old_row} END",
        "tags_insert": f"AFTER INSERT ON {table}_tags BEGIN {search_index_row_sql(spec, f'new.{kind}_id')} END",
        "tags_update": f"AFTER UPDATE ON {table}_tags BEGIN {search_index_row_sql(spec, f'old.{kind}_id, new.{kind}_id')} END",
        "tags_delete": f"AFTER DELETE ON {table}_tags BEGIN {search_index_row_sql(spec, f'old.{kind}_id')} END",
        "tag_rename": f"AFTER UPDATE OF tag ON {spec.tag_table} BEGIN {search_index_row_sql(spec, tagged)} END",
    }
    return {f"{index}_{name}": f"CREATE TRIGGER {index}_{name} {sql}" for name, sql in body.items()}


def install_search_index(connection, specs):
    """(Re)create the index tables and triggers and index every post."""
    uninstall_search_index(connection, specs)
    with connection.cursor() as cursor:
        for spec in specs:
            if connection.vendor == "sqlite":
                statements = sqlite_search_index_sql(spec)
            else:
                statements = postgres_search_index_sql(spec)
            for sql in statements:
                cursor.execute(sql)


def uninstall_search_index(connection, specs):
    """Drop the index tables, their triggers and (on PostgreSQL) their functions."""
    if connection.vendor == "sqlite":
        drop_search_triggers(connection, specs)
    with connection.cursor() as cursor:
        for spec in specs:
            index = spec.index
            cursor.execute(f"DROP TABLE IF EXISTS {index}")
            if connection.vendor != "sqlite":
                for name in ("refresh(bigint[])", "post_changed()", "tags_changed()", "tag_renamed()", "truncated()"):
                    cursor.execute(f"DROP FUNCTION IF EXISTS {index}_{name} CASCADE")


def sqlite_search_index_sql(spec):
    """The statements that create one kind's FTS5 table and triggers, and fill the table."""
    index = spec.index
    return [
        f"CREATE VIRTUAL TABLE {index} USING fts5(title, body, source, tags, tagged, tokenize='{SEARCH_TOKENIZER}')",
        *search_index_triggers(spec).values(),
        search_index_insert_sql(spec, f"SELECT id FROM {spec.table}"),
    ]


def postgres_document_sql(spec):
    """SQL for the weighted tsvector of the post aliased `post`: its texts, then its tag names."""
    kind = spec.kind
    tag_names = (
        f"SELECT string_agg(tag.tag, ' ') FROM {spec.table}_tags AS link"
        f" JOIN {spec.tag_table} AS tag ON tag.id = link.tag_id WHERE link.{kind}_id = post.id"
    )
    columns = [(f"post.{name}", weight) for name, weight in zip(spec.fields, "ABC") if name]
    return " || ".join(
        f"setweight(to_tsvector('{POSTGRES_SEARCH_CONFIG}', coalesce({column}, '')), '{weight}')"
        for column, weight in [*columns, (f"({tag_names})", "C")]
    )


def postgres_search_index_sql(spec):
    """The statements that create one kind's tsvector table, its GIN index, functions and triggers, and fill it."""
    table, index, kind = spec.table, spec.index, spec.kind
    text_columns = ", ".join(name for name in spec.fields if name)
    return [
        f"CREATE TABLE {index} (post_id bigint PRIMARY KEY, document tsvector NOT NULL)",
        f"CREATE INDEX {index}_document ON {index} USING gin (document)",
        f"""CREATE FUNCTION {index}_refresh(ids bigint[]) RETURNS void LANGUAGE sql AS $$
            DELETE FROM {index} WHERE post_id = ANY(ids);
            INSERT INTO {index} (post_id, document)
            SELECT post.id, {postgres_document_sql(spec)} FROM {table} AS post WHERE post.id = ANY(ids);
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
        f"CREATE TRIGGER {index}_tag_rename AFTER UPDATE OF tag ON {spec.tag_table}"
        f" FOR EACH ROW EXECUTE FUNCTION {index}_tag_renamed()",
        f"CREATE TRIGGER {index}_truncate AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {index}_truncated()",
        f"SELECT {index}_refresh(ARRAY(SELECT id FROM {table}))",
    ]


def drop_search_triggers(connection, specs):
    with connection.cursor() as cursor:
        for spec in specs:
            for name in search_index_triggers(spec):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


def create_search_triggers(connection, specs):
    with connection.cursor() as cursor:
        for spec in specs:
            for sql in search_index_triggers(spec).values():
                cursor.execute(sql)


def reindex_posts(connection, spec, post_ids):
    """Rewrite the index rows of these posts of one kind, a few thousand ids per statement.

    Their rows are found by id (`rowid & ID_MASK`), not by key: while the triggers were away a post's
    `created` may have changed, and its row still carries the old key. The ids are read off FTS5's
    own small `_docsize` table (one row of a few bytes per post), not the index's text."""
    post_ids = sorted(post_ids)
    if post_ids and post_ids[-1] > ID_MASK:
        raise ValueError(f"a post id above {ID_MASK} cannot be indexed for search")
    with connection.cursor() as cursor:
        for start in range(0, len(post_ids), 5000):
            ids = ", ".join(str(int(pk)) for pk in post_ids[start : start + 5000])
            rows = f"SELECT id FROM {spec.index}_docsize WHERE id & {ID_MASK} IN ({ids})"
            cursor.execute(f"DELETE FROM {spec.index} WHERE rowid IN ({rows})")
            cursor.execute(search_index_insert_sql(spec, ids))


class SearchIndexBatch:
    """Bulk writes inside one SQLite transaction index each post once, at the end.

    The triggers index a post when it is inserted and again for every tag linked to it (a post with
    three tags: four times), which was half of what an import spent outside Markdown. Inside
    transaction.atomic(): the triggers are dropped, the writer reports the posts it `wrote()`, and
    `finish()` indexes them and puts the triggers back. A rollback undoes the drop as well (SQLite's
    schema changes are transactional), and other connections never see the triggers missing. On
    PostgreSQL it does nothing: dropping a trigger there would lock the table against readers.
    """

    def __init__(self, connection, specs):
        self.connection, self.specs, self.post_ids = connection, {spec.kind: spec for spec in specs}, defaultdict(set)
        self.active = connection.vendor == "sqlite" and search_index_state(connection, specs) == "complete"
        if self.active:
            drop_search_triggers(connection, specs)

    def wrote(self, kind, post_ids):
        self.post_ids[kind].update(post_ids)

    def finish(self):
        if self.active:
            for kind, post_ids in self.post_ids.items():
                reindex_posts(self.connection, self.specs[kind], post_ids)
            create_search_triggers(self.connection, self.specs.values())


def search_index_state(connection, specs):
    """"complete", "missing" (not installed: before migration 0004) or "partial" (triggers dropped)."""
    expected = set()
    for spec in specs:
        expected.add(spec.index)
        expected.update(search_index_triggers(spec))
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        existing = {name for (name,) in cursor.fetchall()}
    if expected <= existing:
        return "complete"
    return "partial" if expected & existing else "missing"


def pause_search_index(specs, plan=None, using="default", **kwargs):
    """Before migrations run (pre_migrate): drop the triggers, which would stop SQLite from rebuilding a table."""
    connection = connections[using]
    if plan and connection.vendor == "sqlite" and search_index_state(connection, specs) != "missing":
        drop_search_triggers(connection, specs)


def resume_search_index(specs, using="default", **kwargs):
    """After migrations ran (post_migrate): reinstall the triggers and refill the index if they were dropped."""
    connection = connections[using]
    if connection.vendor == "sqlite" and search_index_state(connection, specs) == "partial":
        install_search_index(connection, specs)
