"""The JSON API's machinery (django-ninja): how callers authenticate, the one error shape every 4xx
has, and the field types and validators the schemas in linkblog.py are made of.

- `BearerToken(token_model)`, `StaffSession`, `Anonymous`: writers send `Authorization: Bearer
  <token>` or use a staff session; `Anonymous` lets public reads through;
- `LinkblogAPI`: a NinjaAPI whose errors are all `{"detail": ..., "errors": [{field, message}]}`
  (`ApiProblem` raises one), whose public reads show as "auth optional" in the schema;
- `responses()`, `READ_ERRORS`, `WRITE_ERRORS`: the statuses an endpoint documents;
- field types: `text_field()`, `TagName`, `When` (an RFC 3339 date-time, as UTC), `InputSchema`
  (refuses anything but a JSON object), `patch_schema()` (every field optional);
- `validate_with_model_rules()`: the model's own rules, as 422 or 409; `page_of()`: one slice;
- `draft_and_date_filter()`: the Q of a list's filters; `save_post()`: a post and its tags (made
  when new, given `add_tag`), validated and saved in one transaction.

Ninja reads settings on import: linkblog.py imports this module in its `with defer:` block. Models
come in as arguments (this package never imports linkblog).
"""

import re
from datetime import datetime, timezone
from typing import Annotated

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import OperationalError, transaction
from django.db.models import Q
from django.http import Http404, HttpResponse
from ninja.errors import AuthenticationError, HttpError, ValidationError as NinjaValidationError
from ninja.main import NinjaAPI
from ninja.schema import Schema
from ninja.security import HttpBearer, SessionAuthIsStaff
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, create_model, model_validator

from . import database, rules
from .listing import listing_rows
from .permissions import may_view, permission_name, posts_visible_to

NO_NUL_PATTERN = r"^[^\x00]*$"  # PostgreSQL cannot store NUL characters in text
TAG_PATTERN = rf"^{rules.TAG_NAME_PATTERN}$"
READ_ERRORS = (401, 422)
WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 422, 503)


# Authentication: a bearer token, a staff session, or (for reads) nobody at all.


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`: a missing header lets the next method try; a bad token is a 401.
    `token_model` stores tokens by hash (`hash()`, `token_hash`, `is_active`, `user`, `mark_used()`)."""

    def __init__(self, token_model):
        super().__init__()
        self.token_model = token_model

    def authenticate(self, request, token):
        tokens = self.token_model.objects.select_related("user")
        found = tokens.filter(token_hash=self.token_model.hash(token), is_active=True).first()
        if found is None or not found.user.is_active:
            raise AuthenticationError(message="Invalid or revoked API token.")
        found.mark_used()
        return found.user


class Anonymous:
    """Lets a request through unauthenticated: public reads. Shown in the schema as optional auth."""

    openapi_security_schema = None

    def __call__(self, request):
        return AnonymousUser()


class StaffSession(SessionAuthIsStaff):
    """A logged-in staff browser session, with Django's CSRF check as for any form. Without one,
    the caller hears "401: send a token" rather than a CSRF failure."""

    def __call__(self, request):
        if not (request.user.is_authenticated and request.user.is_staff):
            return None
        return super().__call__(request)


def caller(request):
    """The authenticated user behind a request, or None for an anonymous reader."""
    return request.auth if request.auth.is_authenticated else None


def require_permission(request, action, model):
    """403 unless the caller holds Django's `linkblog.<action>_<model>` permission."""
    permission = permission_name(action, model)
    if not caller(request).has_perm(permission):
        raise ApiProblem(403, f"Your account lacks the “{permission}” permission.")


def may_see_drafts(request, model):
    return may_view(caller(request), model)


# Errors: one JSON shape for every 4xx.


class FieldProblem(Schema):
    field: str
    message: str


class Problem(Schema):
    detail: str
    errors: list[FieldProblem] = []


class ApiProblem(HttpError):
    """An error answer with a status, a message and optionally the fields at fault."""

    def __init__(self, status_code, detail, errors=()):
        super().__init__(status_code, detail)
        self.errors = list(errors)


def responses(ok_status, ok_schema, *error_statuses):
    return {ok_status: ok_schema, **{status: Problem for status in error_statuses}}


def errors_of(validation_error):
    """Django's ValidationError as a list of {field, message}."""
    return [
        {"field": field, "message": message}
        for field, messages in validation_error.message_dict.items()
        for message in messages
    ]


def field_name(location):
    """Where pydantic found a problem, as a dotted field name: ("body", "payload", "tags", 0) → "tags.0"."""
    parts = [str(part) for part in location[1:]]
    if parts and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts) or str(location[0])


class LinkblogAPI(NinjaAPI):
    """NinjaAPI with one error shape for every 4xx (and a 503 for a busy database), whose schema
    marks public reads as "auth optional" (an empty security requirement)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for error, handler in [(NinjaValidationError, self.invalid_input), (HttpError, self.http_error),
                               (Http404, self.not_found), (OperationalError, self.database_busy),
                               (RequestDataTooBig, self.request_too_big)]:
            self.add_exception_handler(error, handler)

    def problem(self, request, status, detail, errors=()):
        return self.create_response(request, {"detail": detail, "errors": list(errors)}, status=status)

    def invalid_input(self, request, error):
        errors = [{"field": field_name(item.get("loc", ())), "message": item.get("msg", "Invalid value")} for item in error.errors]
        detail = "; ".join(f"{item['field']}: {item['message']}" for item in errors) or "Invalid input."
        return self.problem(request, 422, detail, errors)

    def http_error(self, request, error):
        detail = str(error)
        if isinstance(error, AuthenticationError) and detail == "Unauthorized":
            detail = "Authentication required: send the header `Authorization: Bearer <token>`."
        response = self.problem(request, error.status_code, detail, getattr(error, "errors", []))
        if error.status_code == 401:
            response["WWW-Authenticate"] = 'Bearer realm="linkblog"'
        return response

    def not_found(self, request, error):
        return self.problem(request, 404, str(error) or "Not found.")

    def database_busy(self, request, error):
        """Another writer (an import, say) held the lock longer than a write waits: 503, try again."""
        if not database.is_busy(error):
            raise error
        wait = database.RETRY_AFTER_SECONDS
        detail = f"The database is busy with another write; nothing was changed. Please try again in {wait} seconds."
        response = self.problem(request, 503, detail)
        response["Retry-After"] = str(wait)
        return response

    def request_too_big(self, request, error):
        return self.problem(request, 413, f"The request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema["paths"].values():
            for operation in operations.values():
                security = operation.get("security", [])
                if {"Anonymous": []} in security:
                    security[security.index({"Anonymous": []})] = {}
        schema["components"].get("securitySchemes", {}).pop("Anonymous", None)
        return schema

    def get_openapi_operation_id(self, operation):
        return operation.view_func.__name__  # plain names: list_items, rename_tag, ...


# Field types: inputs mirror the models' rules so the schema tells the truth.


RFC3339_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def rfc3339_text(value):
    """Only the date-time form the schema promises: no Unix timestamps, no dates without a zone."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339_DATETIME.match(value)):
        return value
    raise ValueError("Expected a date-time with a time zone, e.g. 2024-05-01T12:00:00Z")


def as_utc(value):
    """A datetime as UTC, refusing ones too near the ends of the calendar to convert, or whose day
    has no next day (a post's slug is unique per day)."""
    if value is None:
        return value
    try:
        value = value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("Date is out of range.")
    if value >= rules.LAST_DAY:
        raise ValueError("Date is out of range.")
    return value


def utf8_text(value):
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Text must be valid Unicode (no lone surrogates).")
    return value


def drop_default(field_schema):
    """An optional field whose absence means "unchanged" or "made for you": null is no valid value."""
    field_schema.pop("default", None)


TagName = Annotated[
    str,
    # Trimmed and lower-cased before the pattern, as the admin and the importer take a name.
    BeforeValidator(lambda value: rules.tag_name_as_stored(value) if isinstance(value, str) else value),
    StringConstraints(pattern=TAG_PATTERN, min_length=1, max_length=64),
    Field(description="A tag: letters, digits, hyphens and underscores; stored lower case.", examples=["django"]),
]
When = Annotated[datetime, BeforeValidator(rfc3339_text), AfterValidator(as_utc)]


def text_field(max_length=None, min_length=0, pattern=NO_NUL_PATTERN, **extra):
    """A string field with the model's length limits, no NUL characters and valid Unicode."""
    return Annotated[
        str,
        StringConstraints(pattern=pattern, max_length=max_length, min_length=min_length),
        AfterValidator(utf8_text),
        Field(**extra),
    ]


class InputSchema(Schema):
    """A JSON object sent to the API: anything else (a list, a number) is refused."""

    @model_validator(mode="before")
    @classmethod
    def must_be_an_object(cls, value):
        if not isinstance(getattr(value, "_obj", value), dict):  # ninja wraps what it validates
            raise ValueError("Expected a JSON object.")
        return value


def patch_schema(schema):
    """The same fields, each optional: a PATCH changes only the fields it sends."""
    fields = {}
    for name, info in schema.model_fields.items():
        fields[name] = (info.rebuild_annotation(), Field(None, description=info.description, json_schema_extra=drop_default))
    return create_model(schema.__name__.removesuffix("In") + "Patch", __base__=InputSchema, **fields)


# Reading and writing.


def page_of(queryset, page, load=list, count=None):
    """One slice of a newest-first list and the total count (`count()` unless the caller has a
    cheaper way): two queries, plus `load`'s."""
    count = queryset.count if count is None else count
    return {"count": count(), "items": load(queryset[page.offset : page.offset + page.limit])}


def validate_with_model_rules(instance):
    """The model's rules (the admin's and the importer's too): 422 for a bad field, 409 for a slug
    another post uses that day."""
    try:
        instance.clean_fields()
    except ValidationError as error:
        raise ApiProblem(422, f"Invalid {instance._meta.verbose_name}: " + " ".join(error.messages), errors_of(error))
    try:
        instance.clean()
        instance.validate_constraints()
    except ValidationError as error:
        status = 409 if "slug" in error.message_dict else 422
        raise ApiProblem(status, " ".join(error.messages), errors_of(error))


def draft_and_date_filter(request, filters):
    """The Q of the filters on draft status and dates: the posts and the listing store share them."""
    condition = Q()
    if filters.is_draft is not None:
        if caller(request) is None:
            raise ApiProblem(401, "Only authenticated callers can filter by draft status.")
        condition &= Q(is_draft=filters.is_draft)
    if filters.year is not None:
        condition &= Q(created__year=filters.year)
    if filters.month is not None:
        condition &= Q(created__month=filters.month)
    if filters.since is not None:
        condition &= Q(created__gte=filters.since)
    if filters.before is not None:
        condition &= Q(created__lt=filters.before)
    return condition


def kind_of_item(item):
    """Which schema of a union told apart by `type` an item takes: a post's kind (a model with
    `kind`), a dict's or a schema's `type`. So pydantic tries one schema, not each in turn (a failed
    try looked every missing field up the slow way, through dir())."""
    if isinstance(item, dict):
        return item.get("type")
    return getattr(item, "kind", None) or getattr(item, "type", None)


def stored_items_page(found):
    """An items page ({"count", "items": stored cards}) as JSON: the items' JSON joined as stored, in an
    HttpResponse that django-ninja sends as it is (the cards were rendered through the schema;
    checking them again would cost what storing them saves)."""
    items = ", ".join(card.api_item for card in found["items"])  # as json.dumps separates them
    return HttpResponse(f'{{"count": {found["count"]}, "items": [{items}]}}', content_type="application/json; charset=utf-8")


def visible_posts(request, model):
    """All posts of a kind for a caller allowed to see drafts, published ones for everyone else."""
    return posts_visible_to(caller(request), model)


def listed_items(request, kinds, filters, listing, tags_by_name, count_tagged, count_published, published_filter):
    """/api/items without `q`, from the listing store: rows of `kinds` the caller may see, filtered,
    and how to count them (a tally when nothing but tags narrows what readers see); None when a tag
    named does not exist (nothing can match). `listing`: the ListingStore; `tags_by_name(names)`:
    those tags with `post_count`; `count_tagged(tags)`: the tag page's counter (None: count the rows);
    `count_published()`: every published post; `published_filter()`: their Q."""
    drafts_too = [kind for kind in kinds if may_see_drafts(request, listing.models[kind])]
    published_only = [kind for kind in kinds if kind not in drafts_too]
    of_kinds = lambda some: Q() if set(some) == set(listing.models) else Q(kind__in=some)  # all: no filter
    parts = [of_kinds(published_only) & published_filter()] if published_only else []
    parts += [of_kinds(drafts_too)] if drafts_too else []
    visible = parts[0] if len(parts) == 1 else parts[0] | parts[1]
    narrowed = draft_and_date_filter(request, filters)
    tags = tags_by_name(filters.tag) if filters.tag else []
    if len(tags) < len(set(filters.tag)):
        return None, None
    rows = listing_rows(listing, visible & narrowed, tags)
    what_readers_see = len(published_only) == len(listing.models) and not narrowed
    tally = count_tagged(tags) if tags else count_published
    return rows, tally if what_readers_see else None


# Writing: validate with the model's own rules, then save post and tags in one transaction.


def get_or_create_tags(request, tag_model, names):
    """The tags with these names, created when new: 403 naming them if the caller lacks `add_tag`."""
    names = list(dict.fromkeys(names))
    existing = {tag.tag: tag for tag in tag_model.objects.filter(tag__in=names)}
    new_names = [name for name in names if name not in existing]
    permission = permission_name("add", tag_model)
    if new_names and not caller(request).has_perm(permission):
        listed = ", ".join(new_names)
        raise ApiProblem(403, f"Your account lacks the “{permission}” permission, needed to create the tags: {listed}.",
                         [{"field": "tags", "message": f"New tags need “{permission}”: {listed}"}])
    return [existing.get(name) or tag_model.objects.get_or_create(tag=name)[0] for name in names]


def save_post(request, post, fields, tag_model):
    """Apply `fields` (tags named, as `tag_model` rows) to `post` and store it, all or nothing."""
    tags = fields.pop("tags", None)
    if not fields.get("created"):
        fields.pop("created", None)  # keep the post's date (a new post's defaults to now)
    if not fields.get("slug"):
        fields.pop("slug", None)  # keep the post's slug (a new post gets one from its title)
    for name, value in fields.items():
        setattr(post, name, value)
    with transaction.atomic():
        validate_with_model_rules(post)
        post.save()
        if tags is not None:
            post.tags.set(get_or_create_tags(request, tag_model, tags))
    return type(post).objects.prefetch_related("tags").get(pk=post.pk)
