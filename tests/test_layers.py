"""Imports run only downward (docs/architecture.md, Layers): a module may import its own layer or those
below it, never one above. Every import counts, also those inside functions (a lazy import is still a
dependency). A new top-level module or package must be given its layer here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "registry"

# Lowest first. Within a layer, imports go either way.
LAYERS: list[tuple[str, ...]] = [
    # words of the spec, small parsers and helpers: nothing of the server
    ("__init__", "errors", "startup", "addresses", "digest", "numbers", "json_strict", "reference", "manifest", "config_entries",
     "globs", "periodic", "semver", "cron"),
    ("config", "tls"),                                   # options, and the certificates they name
    ("metadata", "storage", "client"),                   # SQL rows; bytes by digest; the one registry client
    ("gc",),                                             # maintenance over metadata and storage: sweep, policy, fsck
    ("content", "mirror", "auth", "runtime", "http_errors", "events"),  # content (local and mirrored), identities,
    #                                                      the runtime; failures as HTTP (used by auth and all above);
    #                                                      events: the journal the content writes, webhooks, audit
    ("replication", "migrate"),                          # clients of the content layer and the registry client:
    #                                                      replication rules and runs; import and export
    ("api",),                                            # HTTP handlers of the Distribution API and /auth/token
    ("admin", "http_edges"),                             # the admin API and page, metrics, logs; framing
    ("app", "settings"),                                 # the application assembled; configuration with its sections
    ("server", "cli", "accounts_cli", "gc_cli", "healthcheck", "config_docs", "migrations", "__main__",
     "migrate_cli", "replication_cli", "command_content"),  # entry points
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str:
    """`registry.api.blobs` -> `api`; `registry` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported registry module) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "registry":  # from registry import admin, __version__
                found += [(node.lineno, f"registry.{alias.name}") for alias in node.names]
            elif node.module.startswith("registry."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("registry.")]
    return found


def test_every_module_has_a_layer() -> None:
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert tops - set(RANK) == set(), f"give these a layer in tests/test_layers.py: {sorted(tops - set(RANK))}"


def test_imports_only_go_downward() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        source = _layer(module)
        for line, target in _imports(path):
            imported = _layer(target)
            if imported == "__version__":
                imported = "__init__"
            if RANK[imported] > RANK[source]:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {source} imports {target} ({imported} is above)")
    assert not upward, "\n".join(upward)


# Below HTTP: these raise the spec's errors (registry/errors.py, whose constructor takes no status or
# header: mypy holds that) or their own; registry/http_errors.py alone turns failures into HTTP.
DOMAIN = ("errors", "digest", "reference", "manifest", "numbers", "metadata", "storage", "gc", "content", "mirror",
          "events")
HTTP_MODULES = ("aiohttp.web", "registry.http_errors", "registry.api", "registry.admin")


def _all_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_domain_layers_know_nothing_of_http() -> None:
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if _layer(module) not in DOMAIN:
            continue
        for line, target in _all_imports(path):
            if any(target == banned or target.startswith(banned + ".") for banned in HTTP_MODULES):
                offending.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert not offending, "\n".join(offending)
