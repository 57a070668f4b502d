"""Who may do what: Django's per-model permissions, named and checked the same way everywhere
(the admin's tools, the API, the links page, the templates' edit links).

Models come in as arguments (this package never imports linkblog).
- `permission_name(action, model)`: Django's name for it, "linkblog.add_entry";
- `missing_permissions(user, wanted)`: which of some (action, model) pairs a user lacks;
- `may_view(user, model)`: whether a user (perhaps anonymous) may see drafts and scheduled posts;
  `posts_visible_to(user, model)`: the posts they may see;
- `may_change(user, model)`: whether a user (perhaps anonymous) may change one (edit links);
- `needs_permissions(wanted, refuse)`: a view decorator answering `refuse(request, missing)` to the others.
"""

from functools import wraps


def permission_name(action, model):
    """Django's name for a permission on one of our models: "linkblog.add_entry"."""
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def missing_permissions(user, wanted):
    """The names of the (action, model) permissions in `wanted` that `user` lacks."""
    names = [permission_name(action, model) for action, model in wanted]
    return [name for name in names if not user.has_perm(name)]


def may_view(user, model):
    """Whether `user` (perhaps anonymous) may see drafts and scheduled posts of `model`: its view
    permission, or its change permission, which Django's admin lets imply view (one rule everywhere)."""
    return getattr(user, "is_authenticated", False) and any(
        user.has_perm(permission_name(action, model)) for action in ("view", "change"))


def posts_visible_to(user, model):
    """The posts of `model` that `user` (perhaps anonymous) may see: all of them, drafts and scheduled
    ones too, for those who may_view them; the published ones for everyone else."""
    return model.objects.all() if may_view(user, model) else model.objects.published()


def may_change(user, model):
    """Whether `user` (perhaps anonymous) may change posts or tags of `model`."""
    return getattr(user, "is_authenticated", False) and user.has_perm(permission_name("change", model))


def needs_permissions(wanted, refuse):
    """A view for users holding every (action, model) permission in `wanted`; `refuse(request,
    missing)` answers the others."""

    def decorate(view):
        @wraps(view)
        def checked_view(request, *args, **kwargs):
            missing = missing_permissions(request.user, wanted)
            return refuse(request, missing) if missing else view(request, *args, **kwargs)

        return checked_view

    return decorate
