"""The `nanodjango convert` plugin: what the converter (0.17.1) does not do on its own, for linkblog.py.

`nanodjango convert linkblog.py OUT --name=NAME` turns the single file into a Django project. This
plugin, registered by linkblog.py on its app, binds loop, comprehension, lambda and assignment
variables (the converter's reference scanner does not), refiles imports made under another name,
moves the ModelAdmin classes to admin.py, the API to api.py and our commands to management commands,
keeps the signal connections made at import time, writes each module in the file's order, and copies
this package into the project (README: Converting).
"""

import ast
import shutil
from pathlib import Path

from django.contrib import admin
from nanodjango import hookimpl

from .cli import COMMANDS

PACKAGE_DIR = Path(__file__).resolve().parent

class AppNameAsLabel(ast.NodeTransformer):
    """`app.app_name` is the app label, which the converted app keeps."""

    def __init__(self, app_name):
        self.app_name = app_name

    def visit_Attribute(self, node):
        if node.attr == "app_name" and ast.unparse(node.value) == "app":
            return ast.copy_location(ast.Constant(self.app_name), node)
        return self.generic_visit(node)


class ConvertPlugin:
    """What nanodjango's converter (0.17.1) does not do on its own, done for this file (README: Converting).

    The module docstring says what it does; each hook says how.
    """

    # Only meaningful in the single file: a converted project has manage.py and NAME/wsgi.py instead;
    # startproject's settings.py defines its own BASE_DIR (the project root).
    SINGLE_FILE_ONLY = {
        "BASE_DIR", "main", "wsgi_application",
        "serve_production_command", "bench_hello",  # bench/ drives the single file, not a converted project
    }

    @hookimpl
    def convert_init(self, converter):
        self.teach_reference_visitor()
        converter.used.update(self.SINGLE_FILE_ONLY)
        converter.used.update(function.__name__ for _, function, _ in converter.app.templatetag._registered)
        converter.collect_definition = self.without_single_file_decorators(converter.collect_definition, converter.app.app_name)

    @staticmethod
    def without_single_file_decorators(collect_definition, app_name):
        """A function copied into another module loses `@app.templatetag...` and `@cli.command` (the
        template library and the management commands are written separately), and `app.app_name`
        becomes the app label it stands for."""
        from nanodjango.convert.utils import collect_references

        def is_single_file_decorator(decorator):
            source = ast.unparse(decorator)
            return source == "cli.command" or source.startswith("app.templatetag.")

        def is_app_name(node):
            return isinstance(node, ast.Attribute) and node.attr == "app_name" and ast.unparse(node.value) == "app"

        def collect(name):
            source, references = collect_definition(name)
            definition = ast.parse(source).body[0]
            decorators = getattr(definition, "decorator_list", [])
            uses_app_name = any(is_app_name(node) for node in ast.walk(definition))
            if not uses_app_name and not any(is_single_file_decorator(decorator) for decorator in decorators):
                return source, references
            if hasattr(definition, "decorator_list"):
                definition.decorator_list = [decorator for decorator in decorators if not is_single_file_decorator(decorator)]
            definition = AppNameAsLabel(app_name).visit(definition)
            return ast.unparse(definition), collect_references(definition)

        return collect

    @staticmethod
    def teach_reference_visitor():
        from nanodjango.convert.reference import ReferenceVisitor

        def bind(visitor, target):
            """Every name a target stores to: `x`, `(kind, model)`, `first, *rest`."""
            visitor.current_scope.update(
                node.id for node in ast.walk(target) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
            )

        def visit_assign(visitor, node):
            for target in node.targets:
                bind(visitor, target)
            visitor.generic_visit(node)

        def visit_for(visitor, node):
            visitor.visit(node.iter)
            bind(visitor, node.target)
            for statement in node.body + node.orelse:
                visitor.visit(statement)

        def visit_comprehension(visitor, node):
            visitor.visit(node.iter)
            bind(visitor, node.target)
            for condition in node.ifs:
                visitor.visit(condition)

        def visit_lambda(visitor, node):
            visitor.push_scope()
            visitor.current_scope.update(argument.arg for argument in ast.walk(node.args) if isinstance(argument, ast.arg))
            visitor.visit(node.body)
            visitor.pop_scope()

        found_reference = ReferenceVisitor.found_reference

        def found_reference_except_dunders(visitor, node):
            if not (node.id.startswith("__") and node.id.endswith("__")):  # __file__ exists in every module
                found_reference(visitor, node)

        ReferenceVisitor.visit_Assign = visit_assign
        ReferenceVisitor.visit_For = visit_for
        ReferenceVisitor.visit_comprehension = visit_comprehension
        ReferenceVisitor.visit_Lambda = visit_lambda
        ReferenceVisitor.found_reference = found_reference_except_dunders

    @hookimpl
    def convert_collect_imports(self, converter):
        """Imports under another name: the converter files `ValidationError as NinjaValidationError`
        under `ValidationError`, hiding Django's. Refile every import, in file order, under the name
        the code uses."""
        imports = [node for node in ast.walk(converter.ast) if isinstance(node, (ast.Import, ast.ImportFrom))]
        for node in sorted(imports, key=lambda node: (node.lineno, node.col_offset)):
            for alias in node.names:
                converter.imports[alias.asname or alias.name] = ast.unparse(type(node)(**{**vars(node), "names": [alias]}))

    @hookimpl
    def convert_build_settings(self, converter, resolver, settings_ast):
        """Settings helpers in this file's order (the converter's own order is random); WhiteNoise's
        hashed static files kept."""
        definitions = self.collect_definitions(converter, resolver, f"{converter.project_name}.settings")
        settings_ast.body[1:1] = [statement for source in definitions for statement in ast.parse(source).body]
        self.use_djangos_template_loaders(settings_ast)
        settings_ast.body += ast.parse(
            'STATIC_ROOT = BASE_DIR / "static-collected"\n'
            'STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},'
            ' "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}\n'
        ).body

    @staticmethod
    def use_djangos_template_loaders(settings_ast):
        """`TEMPLATES=cached_template_loaders` adjusts nanodjango's loader list; a converted project
        has Django's usual TEMPLATES instead (app templates, cached by Django when no loaders are listed)."""
        settings_ast.body = [
            node for node in settings_ast.body
            if not (isinstance(node, ast.FunctionDef) and node.name == "cached_template_loaders")
        ]
        for node in settings_ast.body:
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "TEMPLATES":
                node.value = ast.parse(
                    '[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,'
                    ' "OPTIONS": {"context_processors": ["django.template.context_processors.request",'
                    ' "django.contrib.auth.context_processors.auth", "django.contrib.messages.context_processors.messages"]}}]'
                ).body[0].value

    @staticmethod
    def collect_definitions(converter, resolver, module):
        """The sources of everything the resolver still needs, transitively, in this file's order."""
        definitions = {}
        pending = set(resolver.global_refs) - ConvertPlugin.SINGLE_FILE_ONLY
        resolver.global_refs.clear()
        while pending:
            name = pending.pop()
            definitions[name], references = converter.collect_definition(name)
            converter.imports[name] = f"from {module} import {name}"
            resolver.local_refs.add(name)
            resolver.add_references(references)  # imports are kept; our own names come back here
            pending |= resolver.global_refs - definitions.keys() - ConvertPlugin.SINGLE_FILE_ONLY
            resolver.global_refs.clear()
        positions = ConvertPlugin.original_positions(converter)
        return [definitions[name] for name in sorted(definitions, key=lambda name: positions.get(name, -1))]

    @staticmethod
    def original_positions(converter):
        """Where each top-level definition (or import-time call) sits in linkblog.py."""
        positions = {}
        for index, node in enumerate(converter.ast.body):
            positions[ConvertPlugin.defined_name(node)] = index
        return positions

    @staticmethod
    def defined_name(node):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            return node.name
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            return node.targets[0].id
        return ast.unparse(node)

    @staticmethod
    def import_time_calls(converter):
        """Statements like `connect_change_signals()`: calls of names in linkblog.py made at import time."""
        def called_name(call):  # `connect_signals` for connect_signals(), `post_migrate` for post_migrate.connect()
            function = call.func
            while isinstance(function, ast.Attribute):
                function = function.value
            return function.id if isinstance(function, ast.Name) else None

        return [
            node for node in converter.ast.body
            if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and called_name(node.value) in vars(converter.module)
            and called_name(node.value) != converter.app._instance_name  # app.route(...): the converter's
        ]

    @staticmethod
    def ninja_apis(converter):
        """Names of the module-level django-ninja APIs (our own NinjaAPI instances)."""
        return [
            name for name, value in vars(converter.module).items()
            if any(cls.__name__ == "NinjaAPI" for cls in type(value).__mro__)
        ]

    def api_members(self, converter):
        """What belongs with the API: the functions its decorators register, and the import-time calls
        of functions that use it (`register_kind(Entry, ...)`)."""
        from nanodjango.convert.utils import collect_references

        apis = set(self.ninja_apis(converter))
        functions, calls = [], []
        for node in converter.ast.body:
            decorators = getattr(node, "decorator_list", [])
            if any(ast.unparse(decorator).split(".")[0] in apis for decorator in decorators):
                functions.append(node.name)
        for node in self.import_time_calls(converter):
            if not isinstance(node.value.func, ast.Name):
                continue
            called, _ = converter.collect_definition(node.value.func.id)
            if apis & collect_references(ast.parse(called).body[0]):
                calls.append(node)
        return functions, calls

    @hookimpl
    def convert_build_app_models(self, converter, resolver, extra_src):
        """Calls made at import time (`connect_change_signals()`, `register_converter(...)`) move with
        the models: models.py is imported before anything else of the app, URL patterns included.
        (Calls that register API endpoints go to api.py.)"""
        from nanodjango.convert.utils import collect_references

        _, api_calls = self.api_members(converter)
        for node in self.import_time_calls(converter):
            if node not in api_calls:
                extra_src.append(ast.unparse(node))
                resolver.add_references(collect_references(node))

    @hookimpl
    def convert_build_app_views_done(self, converter):
        """A NinjaAPI of our own goes to api.py with its endpoints (the converter only knows `@app.api`
        and would leave them unused); urls.py then imports it from there."""
        apis = self.ninja_apis(converter)
        if apis:
            functions, calls = self.api_members(converter)
            self.write_module(converter, "api", [*apis, *functions], statements=calls)

    @hookimpl
    def convert_build_app_admin_done(self, converter):
        """The `@admin.register` ModelAdmin classes go to admin.py (the converter leaves them unused)."""
        model_admins = [
            name for name, value in vars(converter.module).items()
            if isinstance(value, type) and issubclass(value, admin.ModelAdmin) and value.__module__ == converter.module.__name__
        ]
        self.write_module(converter, "admin", model_admins, "from django.contrib import admin")

    @hookimpl
    def convert_copy_assets(self, converter):
        """This package goes into the project beside manage.py, as files: the app imports it as before."""
        shutil.copytree(PACKAGE_DIR, converter.root_path / PACKAGE_DIR.name, ignore=shutil.ignore_patterns("__pycache__"))

    @hookimpl
    def convert_build_app_templatetags_done(self, converter):
        """Our commands (`python linkblog.py NAME`) become management commands (`python manage.py NAME`)."""
        commands = {name: function.__name__ for name, function in COMMANDS.items() if function.__name__ not in self.SINGLE_FILE_ONLY}
        if commands:
            self.write_module(converter, "commands", list(commands.values()))
            self.write_management_commands(converter, commands)

    @staticmethod
    def write_management_commands(converter, commands):
        folder = converter.app_path / "management" / "commands"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").touch()
        (folder / "__init__.py").touch()
        for name, function_name in commands.items():
            summary = (COMMANDS[name].__doc__ or name).strip().splitlines()[0]
            converter.write_file(
                folder / f"{name.replace('-', '_')}.py",
                "import sys",
                "from django.core.management.base import BaseCommand",
                f"from ...commands import {function_name}",
                "class Command(BaseCommand):",
                f"    help = {summary!r}",
                "    def run_from_argv(self, argv):  # the command parses its own arguments, as in linkblog.py",
                f"        sys.exit({function_name}(argv[2:]) or 0)",
            )

    @staticmethod
    def write_module(converter, module_name, names, preamble="", statements=()):
        """Write app/MODULE_NAME.py with these top-level definitions (and statements), and whatever
        they reference."""
        from nanodjango.convert.converter import Resolver
        from nanodjango.convert.utils import collect_references

        resolver = Resolver(converter, f".{module_name}")
        sources = []
        for name in names:
            source, references = converter.collect_definition(name)
            sources.append(source)
            resolver.add(name, references)
        for statement in statements:
            sources.append(ast.unparse(statement))
            resolver.add_references(collect_references(statement))
        converter.write_file(converter.app_path / f"{module_name}.py", preamble, resolver.gen_src(), "\n\n".join(sources))

    @hookimpl
    def convert_build_app_unused(self, converter, resolver, extra_src):
        """What no page, model or admin uses (the search index's SQL, which the migration reaches
        through the app's models module) goes to models.py: in the single file, the models module
        is the whole file."""
        leftovers = set(vars(converter.module)) - converter.used - set(converter.imports)
        leftovers = [name for name in leftovers if not name.startswith("_") and name != converter.app._instance_name]
        if not leftovers:
            return
        models_py = converter.app_path / "models.py"
        existing = models_py.read_text()
        self.write_module(converter, "models", leftovers)
        models_py.write_text(existing + "\n\n" + models_py.read_text())
        extra_src.append("# moved to models.py")  # the converter writes no unused.py when a hook adds source

    @hookimpl
    def convert_build_end(self, converter):
        """Definitions copied into a module come before the models and views that they may reference
        at import time (`POST_MODELS = {"entry": Entry, ...}`): put each module back in this file's order."""
        positions = self.original_positions(converter)
        for path in [*converter.app_path.glob("*.py"), *converter.app_path.glob("templatetags/*.py")]:
            tree = ast.parse(path.read_text())
            imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            if path.name == "models.py":  # leftovers written there import its own names: drop those
                imports = [node for node in imports if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "models")]
            if path.parent.name == "templatetags":  # `from .models import X` is one level up from there
                for node in imports:
                    if isinstance(node, ast.ImportFrom) and node.level == 1:
                        node.level = 2
            others = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
            others.sort(key=lambda node: positions.get(self.defined_name(node), -1))
            converter.write_file(path, ast.unparse(ast.Module(body=imports + others, type_ignores=[])))
