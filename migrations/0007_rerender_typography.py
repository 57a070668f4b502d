# Re-render every stored post and tag description with today's renderer: typographic quotes and
# dashes (Markdown's smarty extension) and http:// images asked for over https. Data only, so it
# stays in a file of its own. The renderer comes from blogworks, never from linkblog.py (a migration
# must not import the app it migrates), and rows are read and written in batches so that a blog of
# 100,000 posts never sits in memory at once.

from django.db import migrations, reset_queries

from blogworks import text

BATCH = 500

# (model, its Markdown field, the function giving the stored fields from that Markdown)
RENDERED = [
    ("Entry", "body", text.rendered_entry),
    ("Blogmark", "commentary", lambda markdown: {"html": text.render_markdown(markdown)}),
    ("Quotation", "quotation", lambda markdown: {"html": text.render_markdown(markdown)}),
    ("Tag", "description", lambda markdown: {"description_html": text.render_markdown(markdown)}),
]


def batches(model, source_field):
    """The rows of `model` (pk and `source_field` only), BATCH at a time, in pk order."""
    last_pk = 0
    while True:
        rows = list(model.objects.filter(pk__gt=last_pk).order_by("pk").only("pk", source_field)[:BATCH])
        if not rows:
            return
        yield rows
        last_pk = rows[-1].pk


def rerender(apps, schema_editor):
    for model_name, source_field, render in RENDERED:
        model = apps.get_model("linkblog", model_name)
        for rows in batches(model, source_field):
            for row in rows:
                for name, value in render(getattr(row, source_field)).items():
                    setattr(row, name, value)
            model.objects.bulk_update(rows, list(render("").keys()))
            reset_queries()  # with DEBUG on Django keeps every query's SQL: memory would grow with the blog


class Migration(migrations.Migration):
    dependencies = [
        ("linkblog", "0006_input_rules"),
    ]

    operations = [migrations.RunPython(rerender, migrations.RunPython.noop)]
