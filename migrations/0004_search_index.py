"""The full-text search index: per kind, a table (FTS5 on SQLite, tsvector with a GIN index on
PostgreSQL) and the triggers that keep it in sync with every write; existing posts are indexed.

The SQL lives in linkblog.py (section "Search index") so that this migration and the repair that runs
after later migrations build exactly the same index; the index holds no data of its own (it is rebuilt
from the posts), so running today's definition here is safe.
"""

from django.apps import apps as global_apps
from django.db import migrations


def linkblog_module():
    return global_apps.get_app_config("linkblog").models_module


def install(apps, schema_editor):
    linkblog_module().install_search_index(schema_editor.connection)


def uninstall(apps, schema_editor):
    linkblog_module().uninstall_search_index(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("linkblog", "0003_apitoken_tagredirect"),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
