"""What a post does with its own content: stores the HTML its Markdown renders to (so that a page
view never runs Markdown), notes when an edit changed it, and says when readers last saw it change
and whether it is still scheduled.

`StoredContent` is a mixin for the post models (each has `kind`, `markdown_field`, `export_fields`,
`slug_source_field`, `created`, `updated`, `is_draft`); a kind that stores more from its Markdown
overrides `rendered`, one whose title says more overrides `feed_title` or `page_title`.
"""

from django.utils import timezone

from . import text


class StoredContent:
    """A post's rendered HTML, its titles, its edits and its moment, kept on the row."""

    def __str__(self):
        return getattr(self, self.slug_source_field) or self.slug

    def feed_title(self):
        return str(self)

    def page_title(self):
        """The permalink's <title>: what tells this post apart in a tab or a search engine's results."""
        return self.feed_title()

    @property
    def partial_template(self):
        return f"_{self.kind}.html"

    @property
    def kind_label(self):
        """The kind's name for readers (Entry, Blogmark, Quotation): the singular of the search facets' label."""
        return self._meta.verbose_name.capitalize()

    def render(self):
        """Store everything pages show, so that a page view never runs Markdown."""
        for name, value in self.rendered(getattr(self, self.markdown_field)).items():
            setattr(self, name, value)

    @classmethod
    def rendered(cls, markdown_text):
        """{field: value} of what a post of this kind stores from its Markdown."""
        return {"html": text.render_markdown(markdown_text)}

    def note_edit(self):
        """Set `updated` when a stored post's content (its exported fields) differs from the database's."""
        if self.pk is None:
            return
        stored = type(self).objects.filter(pk=self.pk).values_list(*self.export_fields).first()
        if stored is not None and tuple(stored) != tuple(getattr(self, name) for name in self.export_fields):
            self.updated = timezone.now()

    @property
    def last_modified(self):
        """When readers last saw it change: its edit, or its (possibly scheduled) publication."""
        return max(self.created, self.updated) if self.updated else self.created

    @property
    def is_scheduled(self):
        return not self.is_draft and self.created > timezone.now()
