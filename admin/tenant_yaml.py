"""Reading a tenant file's YAML: timestamps kept as text, duplicate keys refused, and every problem reported with
its file, line and field path."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import (
    ValidationError,
)

from admin.tenant_file import Loc, RolloutError, TenantFile, _reference_problems, _validation_problems, render_loc


class _TenantFileLoader(yaml.SafeLoader):
    """yaml.safe_load, except that timestamps stay text.

    PyYAML turns unquoted 2026-12-25 into a date and raises a bare ValueError, with no line, for 2026-02-30. Keeping
    the text lets the schema report impossible dates with their field path and line like any other mistake.
    """


def _construct_timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_TenantFileLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_text)


def _line_of(root: yaml.Node, loc: Loc) -> int:
    """1-based line of the deepest node along `loc`; keys point at their key, so block values show their key line."""
    node = root
    line = root.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            # The last occurrence wins, as it does when the document is constructed.
            for key, value in reversed(node.value):
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _duplicate_keys(root: yaml.Node) -> list[tuple[int, str]]:
    """YAML silently keeps the last of two equal keys; in a reviewed config file that is always a mistake."""
    found: list[tuple[int, str]] = []
    seen_nodes: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue  # aliases share nodes, and a recursive anchor would otherwise loop forever
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                pending.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    found.append((line, f"duplicate key {key.value!r} (first on line {first[key.value]})"))
                else:
                    first[key.value] = line
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return sorted(found)


def parse_tenant_text(text: str, source: str = "<tenant file>") -> TenantFile:
    """Parse and validate a tenant file's text; raises RolloutError with `source:line: path: problem` lines."""
    loader = _TenantFileLoader(text)
    try:
        root = loader.get_single_node()
        duplicates = _duplicate_keys(root) if root is not None else []
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context
        # The parser notices a missing bracket or quote lines later; the line where the construct began helps too.
        if context and exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            context = f"{context} (from line {exc.context_mark.line + 1})"
        problem = "; ".join(part for part in (context, exc.problem) if part) or "not valid YAML"
        raise RolloutError([f"{source}:{mark.line + 1 if mark else 1}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise RolloutError([f"{source}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    if root is None:
        raise RolloutError([f"{source}:1: the file is empty"])

    problems: list[tuple[int, str]] = list(duplicates)
    try:
        file = TenantFile.model_validate(data)
    except ValidationError as exc:
        found = _validation_problems(exc)
    else:
        found = _reference_problems(file)
    problems.extend((_line_of(root, loc), f"{render_loc(loc)}: {message}") for loc, message in found)
    if problems:
        # Sorted by line so the messages read top to bottom alongside the file.
        raise RolloutError([f"{source}:{line}: {message}" for line, message in sorted(problems, key=lambda p: p[0])])
    return file


def load_tenant_file(path: str | Path) -> TenantFile:
    """Read and validate a tenant YAML file; raises RolloutError naming the line and field of every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RolloutError([f"{path}: cannot read the file: {exc}"]) from None
    return parse_tenant_text(text, str(path))
