"""Renaming and merging tags, leaving the old name behind as a redirect (its page answers 301 to the
new one). The API's rename and merge endpoints call these; `redirect_model` is linkblog.py's
TagRedirect (`old_tag`, `tag`), `post_models` its {kind: model}. This module never imports linkblog.
"""

from django.db import transaction


class TagNameTaken(Exception):
    """Another tag has the name asked for: merge into it instead."""


def rename(tag, new_name, redirect_model):
    """Give `tag` the name `new_name`; its old name redirects to it. TagNameTaken if another tag has it."""
    with transaction.atomic():
        if type(tag).objects.filter(tag=new_name).exclude(pk=tag.pk).exists():
            raise TagNameTaken(new_name)
        old_name = tag.tag
        if new_name != old_name:
            redirect_model.objects.filter(old_tag=new_name).delete()
            tag.tag = new_name
            tag.save()
            redirect_model.objects.update_or_create(old_tag=old_name, defaults={"tag": tag})


def merge(source, target, redirect_model, post_models):
    """Give every post tagged `source` the tag `target`, delete `source`, and send its name (and the
    names that redirected to it) to `target`."""
    with transaction.atomic():
        move_tagged_posts(source, target, post_models)
        redirect_model.objects.filter(tag=source).update(tag=target)
        old_name = source.tag
        source.delete()
        redirect_model.objects.update_or_create(old_tag=old_name, defaults={"tag": target})


def move_tagged_posts(source, target, post_models):
    """Give every post tagged `source` the tag `target` too (bulk, no duplicates)."""
    for model in post_models.values():
        through = model.tags.through
        post_ids = through.objects.filter(tag=source).values_list(f"{model.kind}_id", flat=True)
        links = [through(**{f"{model.kind}_id": post_id, "tag_id": target.pk}) for post_id in post_ids]
        through.objects.bulk_create(links, ignore_conflicts=True)
