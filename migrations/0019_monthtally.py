"""Month tallies (blogworks/listing.py): each UTC month's non-draft posts, counted for the posts
already written, so that the date archives count their months without reading every row."""

from datetime import date, timezone

from django.db import migrations, models

from blogworks.listing import ListingStore, refresh_month_tallies

KINDS = {"entry": "Entry", "blogmark": "Blogmark", "quotation": "Quotation"}


def fill_month_tallies(apps, schema_editor):
    """Every month with a listing row, counted from the listing store (one GROUP BY over its index)."""
    model = lambda name: apps.get_model("linkblog", name)
    store = ListingStore({kind: model(name) for kind, name in KINDS.items()}, model("Listed"), model("ListedTag"),
                         model("Tally"), model("PairTally"), model("MonthTally"))
    dates = store.listed.objects.filter(is_draft=False).aggregate(first=models.Min("created"), last=models.Max("created"))
    if dates["first"] is not None:
        first, last = (moment.astimezone(timezone.utc) for moment in (dates["first"], dates["last"]))
        refresh_month_tallies(store, {date(first.year, first.month, 1), date(last.year, last.month, 1)})


class Migration(migrations.Migration):

    dependencies = [
        ("linkblog", "0018_search_index_date_keys"),
    ]

    operations = [
        migrations.CreateModel(
            name="MonthTally",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("month", models.DateField(unique=True)),
                ("listed", models.IntegerField(default=0)),
                ("newest", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(fill_month_tallies, migrations.RunPython.noop),
    ]
