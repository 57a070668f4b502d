"""The SQLite search index holds each post's tags as whole tokens too (a `tagged` column:
blogworks/search_index.py, `tag_token`), so that a search within a tag is one FTS5 query.

As in 0018, the index is rebuilt from the posts after the migrations have run: dropping its triggers
is the sign `resume_search_index` (post_migrate) takes to create it again, with the new column.
PostgreSQL's index, whose search within a tag its planner joins, is left as it is.
"""

from django.db import migrations

from blogworks.search_index import IndexedKind, drop_search_triggers

INDEXED = [
    IndexedKind("entry", "linkblog_entry", ("title", "body", ""), "linkblog_tag"),
    IndexedKind("blogmark", "linkblog_blogmark", ("link_title", "commentary", "via_title"), "linkblog_tag"),
    IndexedKind("quotation", "linkblog_quotation", ("", "quotation", "source"), "linkblog_tag"),
]


def rebuild_after_migrating(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        drop_search_triggers(schema_editor.connection, INDEXED)


class Migration(migrations.Migration):
    dependencies = [
        ("linkblog", "0019_monthtally"),
    ]

    operations = [
        migrations.RunPython(rebuild_after_migrating, migrations.RunPython.noop, elidable=False),
    ]
