"""The crate's modules import one way: from the Lambda handler down to plain values.

Reads every `crate::<module>` path in src/ (comments aside) and fails when a module imports one in
a higher layer, or when modules of one layer import each other in a cycle. LAYERS is the map;
docs/development.md ("Source layout") explains it. A module that is not in the map fails too, so
a new file is placed on purpose. Run by `make lint`.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

# Top to bottom. A module may import from its own layer (without a cycle) and from any below.
LAYERS: list[set[str]] = [
    {"handler"},  # composition root: builds what lives across invocations, dispatches events
    {"source"},  # envelopes in, Lambda's answers out
    {"delivery", "init_error"},  # grouping, order, outcome classes / init failures for Lambda
    {"quarantine", "memfault", "settled"},  # failure records, the chunks API, resend memory
    {"quarantine_queue", "stream_failure_bucket"},  # the function's AWS writes
    {"config"},  # environment -> Config, validated once
    {"aws"},  # AWS destinations and SigV4 requests
    {"http_client", "url", "routing", "event", "retry", "redact", "observability", "source_kind"},  # leaves
]
ROOT_FILES = {"lib", "main"}
CRATE_PATH = re.compile(r"\bcrate::([a-z_]+)")


def module_of(path: Path, src: Path) -> str:
    return path.relative_to(src).parts[0].removesuffix(".rs")


def imports(src: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(src.rglob("*.rs")):
        module = module_of(path, src)
        for line in path.read_text().splitlines():
            code = line.split("//", 1)[0]
            for target in CRATE_PATH.findall(code):
                if target != module:
                    graph[module].add(target)
        graph.setdefault(module, set())
    return graph


def problems(src: Path) -> list[str]:
    layer_of = {module: depth for depth, layer in enumerate(LAYERS) for module in layer}
    graph = imports(src)
    found = []
    for module in sorted(graph):
        if module in ROOT_FILES:
            continue
        if module not in layer_of:
            found.append(f"{module}: not in the layer map of tests/check_layers.py")
            continue
        for target in sorted(graph[module]):
            if target in layer_of and layer_of[target] < layer_of[module]:
                found.append(f"{module} imports {target}, a higher layer")
    found.extend(cycles({m: t for m, t in graph.items() if m not in ROOT_FILES}))
    return found


def cycles(graph: dict[str, set[str]]) -> list[str]:
    found, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                loop = trail[trail.index(target):] + [target]
                found.append("import cycle: " + " -> ".join(loop))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    found = problems(src)
    for problem in found:
        print(f"layers: {problem}")
    if not found:
        print(f"layers: {len(imports(src)) - len(ROOT_FILES)} modules, imports point down only")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
