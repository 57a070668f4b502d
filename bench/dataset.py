"""
A realistic, deterministic link-blog data set, written straight into a database.

    python bench/dataset.py --posts 100000 --database sqlite:////tmp/bench.sqlite3 [--seed 7]

About 75% blogmarks, 20% entries and 5% quotations over twenty years; Markdown bodies of
realistic length (entries have several paragraphs with links, code and lists); 5,000 tags in a
long-tail (Zipf-Mandelbrot) distribution, the biggest of which carries at least 600 posts (or
half of the posts, for tiny data sets); a few drafts. The same seed always gives the same posts.

Two halves, usable separately:
- `generate(posts, seed)` yields plain dicts (no Django needed), e.g. for an importer to write
  out in its own format: {"kind", "created", "slug", "is_draft", "tags", **the kind's fields}.
- `write(records)` bulk-inserts them through the ORM (render() called per object, tags through
  the through-tables in bulk) and sends `posts_changed` once. Run it in its own process: this
  file sets DATABASE_URL before importing linkblog.
"""

import argparse
import math
import os
import random
import sys
import time
from bisect import bisect
from datetime import datetime, timedelta, timezone
from itertools import accumulate, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TAG_COUNT = 5000
BIG_TAG_POSTS = 600
KIND_WEIGHTS = {"blogmark": 75, "entry": 20, "quotation": 5}
DRAFT_RATE = 0.005
FIRST_DAY = datetime(2006, 1, 1, tzinfo=timezone.utc)
YEARS = 20

# Words as in English: a few function words make up nearly half of any text, and the rest follow a
# long tail (Zipf), so a search for two ordinary words matches a few hundred posts, not all of them.
FUNCTION_WORDS = """
the a of to and in is that for it with as on be this are by or from at not you can but have
which we will an more one all if their they has about was so what there when been like just
into than other some them only how then its also these would could our way
""".split()
REAL_WORDS = """
time people work first most need should data model code database query page server request
response python django sqlite postgres index cache template view middleware feed search tag post
blog link quote entry release version library tool project open source web browser javascript css
html api json http client test benchmark memory latency throughput worker process thread async
language model prompt token context agent llm embedding vector training inference weights paper
research interesting useful neat trick pattern design small fast simple robust clever detail
""".split()
SYLLABLES = "ka lo mi ter on ex pra vel sun dor bri ta mon gal fen ru cho per lin sa".split()
FUNCTION_SHARE = 0.45


def content_words():
    """The long-tail vocabulary: real words first (most frequent), then made-up ones."""
    words = list(dict.fromkeys(REAL_WORDS))
    for first in SYLLABLES:
        for second in SYLLABLES:
            for third in SYLLABLES:
                if first != second != third:
                    words.append(first + second + third)
    return words[:6000]


CONTENT_WORDS = content_words()
# Two words of the middle of the tail: each is in a few percent of posts.
SEARCH_WORDS = (CONTENT_WORDS[60], CONTENT_WORDS[120])
WORDS = REAL_WORDS  # for tag names

TOPICS = """
python django sqlite postgresql javascript css html web-performance security datasette llms ai
openai anthropic claude gpt generative-ai prompt-engineering embeddings rust go webassembly
docker kubernetes git github open-source testing pytest caching search full-text-search rss
atom markdown unicode accessibility browsers chrome firefox safari http http2 apis json graphql
rest oauth passwords cryptography privacy ethics journalism data-journalism museums maps gis
observable d3 visualization pandas numpy jupyter machine-learning deep-learning transformers
""".split()

NAMES = """
Ada Alan Grace Linus Guido Adrian Jacob Simon Julia Ken Dennis Barbara Margaret Tim Donald
Edsger Niklaus Bjarne Larry Frances Radia Katherine Hedy Ward Martin Kent Rich Joe Rob Brian
""".split()
SURNAMES = """
Lovelace Turing Hopper Torvalds Rossum Holovaty Kaplan-Moss Willison Evans Thompson Ritchie
Liskov Hamilton Berners-Lee Knuth Dijkstra Wirth Stroustrup Wall Allen Perlman Johnson Lamarr
Cunningham Fowler Beck Hickey Armstrong Pike Kernighan
""".split()
DOMAINS = """
example.com example.org example.net blog.example.com docs.example.org news.example.net
research.example.edu github.example.com arxiv.example.org til.example.com
""".split()


# --- Tags: 5,000 names and a long-tail chooser ---------------------------------------------


def tag_names():
    """5,000 distinct tag slugs: real-looking topics first, then two-word combinations."""
    names = list(dict.fromkeys(TOPICS))
    words = [word for word in WORDS if len(word) > 3]
    for first in TOPICS + words:
        for second in words:
            if len(names) == TAG_COUNT:
                return names
            name = f"{first}-{second}"
            if first != second and name not in names:
                names.append(name)
    return names


class TagChooser:
    """Draws tag ranks with weight 1/(rank + 10): a Zipf-Mandelbrot long tail over 5,000 tags."""

    def __init__(self, rng):
        self.rng = rng
        self.cumulative = list(accumulate(1 / (rank + 10) for rank in range(TAG_COUNT)))

    def choose(self, count):
        chosen = set()
        while len(chosen) < count:
            point = self.rng.random() * self.cumulative[-1]
            chosen.add(bisect(self.cumulative, point))
        return sorted(chosen)


# --- Text: sentences, paragraphs and Markdown bodies ------------------------------------------


class Writer:
    def __init__(self, rng):
        self.rng = rng
        self.cumulative = list(accumulate(1 / (rank + 3) for rank in range(len(CONTENT_WORDS))))

    def word(self):
        if self.rng.random() < FUNCTION_SHARE:
            return self.rng.choice(FUNCTION_WORDS)
        return CONTENT_WORDS[bisect(self.cumulative, self.rng.random() * self.cumulative[-1])]

    def words(self, low, high):
        return " ".join(self.word() for _ in range(self.rng.randint(low, high)))

    def title(self, low=3, high=9):
        return self.words(low, high).capitalize()

    def url(self):
        path = "/".join(self.words(1, 1) for _ in range(self.rng.randint(1, 3)))
        return f"https://{self.rng.choice(DOMAINS)}/{path}"

    def person(self):
        return f"{self.rng.choice(NAMES)} {self.rng.choice(SURNAMES)}"

    def sentence(self):
        text = self.words(6, 22)
        roll = self.rng.random()
        if roll < 0.15:
            text += f" [{self.words(1, 4)}]({self.url()})"
        elif roll < 0.25:
            text += f" `{self.word()}()`"
        elif roll < 0.30:
            text += f" **{self.words(1, 3)}**"
        return text[0].upper() + text[1:] + "."

    def paragraph(self, low=2, high=6):
        return " ".join(self.sentence() for _ in range(self.rng.randint(low, high)))

    def code_block(self):
        lines = [f"def {self.word()}_view(request):"]
        lines += [f"    {self.word()} = {self.word()}({self.rng.randint(1, 99)})"
                  for _ in range(self.rng.randint(2, 8))]
        return "```python\n" + "\n".join(lines) + "\n```"

    def bullet_list(self):
        return "\n".join(f"- {self.words(3, 12)}" for _ in range(self.rng.randint(3, 7)))

    def entry_body(self):
        """Several paragraphs, with the occasional heading, code block, list and quote."""
        blocks = [self.paragraph(3, 7)]
        for _ in range(self.rng.randint(2, 9)):
            roll = self.rng.random()
            if roll < 0.12:
                blocks.append(f"## {self.title(2, 5)}")
            elif roll < 0.25:
                blocks.append(self.code_block())
            elif roll < 0.37:
                blocks.append(self.bullet_list())
            elif roll < 0.42:
                blocks.append("> " + self.paragraph(1, 3))
            blocks.append(self.paragraph())
        return "\n\n".join(blocks)

    def commentary(self):
        """A blogmark's comment: usually a paragraph or two, sometimes nothing, sometimes a quote."""
        roll = self.rng.random()
        if roll < 0.1:
            return ""
        blocks = [self.paragraph(1, 4)]
        if roll > 0.7:
            blocks.append("> " + self.paragraph(1, 3))
        if roll > 0.85:
            blocks.append(self.paragraph(1, 4))
        return "\n\n".join(blocks)


# --- Posts: plain records, deterministic for a seed ------------------------------------------


def slugify_words(text):
    return "-".join(text.lower().replace("`", "").split())[:56].strip("-") or "post"


def creation_times(rng, posts):
    """`posts` moments over twenty years, oldest first (ids then follow time, as on a real blog)."""
    span = YEARS * 365 * 24 * 3600
    return [FIRST_DAY + timedelta(seconds=second) for second in sorted(rng.randrange(span) for _ in range(posts))]


def big_tag_floor(posts):
    return min(BIG_TAG_POSTS, posts // 2)


def generate(posts, seed=7):
    """Yield `posts` records (dicts), oldest first; tags are names from `tag_names()`."""
    rng = random.Random(seed)
    writer, chooser, names = Writer(rng), TagChooser(rng), tag_names()
    kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    big_tag_every = max(1, math.ceil(posts / (big_tag_floor(posts) * 1.2)))
    slugs_by_day = set()
    for number, created in enumerate(creation_times(rng, posts)):
        kind = rng.choices(kinds, weights)[0]
        record = {"kind": kind, "created": created, "is_draft": rng.random() < DRAFT_RATE}
        if kind == "entry":
            record.update(title=writer.title(), body=writer.entry_body())
            slug_source = record["title"]
        elif kind == "blogmark":
            record.update(link_url=writer.url(), link_title=writer.title(), commentary=writer.commentary(),
                          via_url="", via_title="")
            if rng.random() < 0.2:
                record.update(via_url=writer.url(), via_title=writer.person())
            slug_source = record["link_title"]
        else:
            record.update(quotation=writer.paragraph(1, 3), source=writer.person(),
                          source_url=writer.url() if rng.random() < 0.8 else "")
            slug_source = record["source"]
        ranks = chooser.choose(rng.choice((1, 1, 2, 2, 3, 3, 4, 5)))
        if number % big_tag_every == 0 and 0 not in ranks:
            ranks = [0, *ranks]  # the big tag reaches its floor even in a small data set
        record["tags"] = [names[rank] for rank in ranks]
        record["slug"] = unique_slug(slugs_by_day, kind, created, slugify_words(slug_source))
        yield record


def unique_slug(taken, kind, created, base):
    """A slug no other post of this kind uses on the same UTC day (the permalink's uniqueness)."""
    day = created.date()
    slug, number = base, 2
    while (kind, day, slug) in taken:
        slug, number = f"{base}-{number}", number + 1
    taken.add((kind, day, slug))
    return slug


# --- Writing: bulk inserts through the ORM ------------------------------------------------------

BATCH = 2000


def write(records, batch=BATCH):
    """Insert the records (tags created first), rendering each post's HTML; returns the post count."""
    from django.db import transaction

    import linkblog

    tag_ids = create_tags()
    next_ids = {kind: next_free_id(model) for kind, model in linkblog.POST_MODELS.items()}
    written = 0
    while chunk := list(islice(records, batch)):
        with transaction.atomic():
            insert_chunk(chunk, tag_ids, next_ids)
        written += len(chunk)
    # Bulk writes send no signals: bring the listing store in step once, as the import does.
    linkblog.store_posts_listing({kind: model.objects.values_list("pk", flat=True) for kind, model in linkblog.POST_MODELS.items()})
    linkblog.posts_changed.send(sender=write)
    return written


def create_tags():
    from linkblog import Tag

    existing = set(Tag.objects.values_list("tag", flat=True))
    Tag.objects.bulk_create([Tag(tag=name) for name in tag_names() if name not in existing], batch_size=BATCH)
    return dict(Tag.objects.values_list("tag", "id"))


def next_free_id(model):
    last = model.objects.order_by("-id").values_list("id", flat=True).first()
    return (last or 0) + 1


def insert_chunk(chunk, tag_ids, next_ids):
    from linkblog import POST_MODELS

    posts_by_kind, links_by_kind = {kind: [] for kind in POST_MODELS}, {kind: [] for kind in POST_MODELS}
    for record in chunk:
        kind = record["kind"]
        model = POST_MODELS[kind]
        fields = {key: value for key, value in record.items() if key not in ("kind", "tags")}
        post = model(id=next_ids[kind], **fields)
        next_ids[kind] += 1
        post.render()
        posts_by_kind[kind].append(post)
        through = model.tags.through
        links_by_kind[kind] += [through(**{f"{kind}_id": post.id, "tag_id": tag_ids[name]}) for name in record["tags"]]
    for kind, model in POST_MODELS.items():
        model.objects.bulk_create(posts_by_kind[kind])
        model.tags.through.objects.bulk_create(links_by_kind[kind])


# --- Command line -------------------------------------------------------------------------------


def prepare_django(database_url):
    """Point linkblog at the database, import it, and migrate: call before `write()`."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_DEBUG", "false")  # DEBUG would keep every query in memory
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-dataset-not-a-secret")
    sys.path.insert(0, str(ROOT))
    import linkblog
    from django.core.management import call_command

    linkblog.app._prepare()
    call_command("migrate", verbosity=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--posts", type=int, required=True, help="how many posts, e.g. 100000")
    parser.add_argument("--database", required=True, help="a DATABASE_URL, e.g. sqlite:////tmp/bench.sqlite3")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.posts < 1:
        parser.error("--posts must be at least 1")
    prepare_django(args.database)
    started = time.perf_counter()
    written = write(generate(args.posts, args.seed))
    seconds = time.perf_counter() - started
    print(f"wrote {written} posts in {seconds:.1f} s ({written / seconds:.0f} posts/s)")


if __name__ == "__main__":
    main()
