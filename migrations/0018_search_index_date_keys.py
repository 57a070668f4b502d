"""The SQLite search index keyed by date: each row's rowid becomes the minute its post was created,
then the post's id (blogworks/search_index.py, `index_key_sql`), so that the newest matches of a
common word are read straight off the index.

The index is rebuilt from the posts after the migrations have run: this drops its triggers, which
`resume_search_index` (post_migrate) takes as the sign to rebuild it, as it does after a migration
rebuilds a table. Installing it here instead would put the triggers back in the middle of a plan,
where a later migration's table rebuild would trip over them. Rebuilding took 6 s for 100,000 posts
on the 2-core development VM. PostgreSQL's index, keyed by post id in a table of its own, is left as
it is.
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
        ("linkblog", "0017_pairtally_ordered_indexes"),
    ]

    operations = [
        migrations.RunPython(rebuild_after_migrating, migrations.RunPython.noop, elidable=False),
    ]
