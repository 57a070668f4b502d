"""Tags beyond their model: renaming and merging them, leaving the old name behind as a redirect (its
page answers 301 to the new one), and the tag list's A-Z index and cloud sizes.

The API's rename and merge endpoints call `rename` and `merge`; `redirect_model` is linkblog.py's
TagRedirect (`old_tag`, `tag`), `post_models` its {kind: model}, `store_listing` the function that
brings the listing store in step with some posts. This module never imports linkblog.
"""

import math

from django.db import transaction
from django.db.models import Q

CLOUD_SIZES = 5
TAG_INITIALS = ["0-9", *"abcdefghijklmnopqrstuvwxyz"]


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


def merge(source, target, redirect_model, post_models, store_listing):
    """Give every post tagged `source` the tag `target`, delete `source`, and send its name (and the
    names that redirected to it) to `target`."""
    with transaction.atomic():
        store_listing(move_tagged_posts(source, target, post_models))  # bulk writes send no signals
        redirect_model.objects.filter(tag=source).update(tag=target)
        old_name = source.tag
        source.delete()
        redirect_model.objects.update_or_create(old_tag=old_name, defaults={"tag": target})


def move_tagged_posts(source, target, post_models):
    """Give every post tagged `source` the tag `target` too (bulk, no duplicates); {kind: post ids} moved."""
    moved = {}
    for model in post_models.values():
        through = model.tags.through
        moved[model.kind] = list(through.objects.filter(tag=source).values_list(f"{model.kind}_id", flat=True))
        links = [through(**{f"{model.kind}_id": post_id, "tag_id": target.pk}) for post_id in moved[model.kind]]
        through.objects.bulk_create(links, ignore_conflicts=True)
    return moved


def tags_matching(initial, q):
    """The Q of the tags in the list asked for: by initial (a letter, or "0-9" for any digit) when
    one is chosen, else those containing `q` (every tag for an empty `q`)."""
    if initial == "0-9":
        return Q(tag__regex=r"^[0-9]")
    if initial in TAG_INITIALS:
        return Q(tag__startswith=initial)
    return Q(tag__contains=q) if q else Q()


def cloud_size(count, least, most):
    """1 (smallest) to CLOUD_SIZES: how big a tag with `count` posts is drawn among tags with
    `least` to `most` posts, on a log scale."""
    if most <= least:
        return 1
    return 1 + round((CLOUD_SIZES - 1) * math.log(count / least) / math.log(most / least))
