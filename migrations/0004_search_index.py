"""The full-text search index: per kind, a table (FTS5 on SQLite, tsvector with a GIN index on
PostgreSQL) and the triggers that keep it in sync with every write; existing posts are indexed.

The SQL lives in blogworks/search_index.py, so that this migration and the repair that runs after
later migrations build the same index. What is indexed is frozen here, as a migration freezes its
fields; the index holds no data of its own (it is rebuilt from the posts).
"""

from django.db import migrations

from blogworks.search_index import IndexedKind, install_search_index, uninstall_search_index

INDEXED = [
    IndexedKind("entry", "linkblog_entry", ("title", "body", ""), "linkblog_tag"),
    IndexedKind("blogmark", "linkblog_blogmark", ("link_title", "commentary", "via_title"), "linkblog_tag"),
    IndexedKind("quotation", "linkblog_quotation", ("", "quotation", "source"), "linkblog_tag"),
]


def install(apps, schema_editor):
    install_search_index(schema_editor.connection, INDEXED)


def uninstall(apps, schema_editor):
    uninstall_search_index(schema_editor.connection, INDEXED)


class Migration(migrations.Migration):
    dependencies = [
        ("linkblog", "0003_apitoken_tagredirect"),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
