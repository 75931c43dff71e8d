"""tests/check_layers.py finds what it is for, on small trees written here."""

from __future__ import annotations

from pathlib import Path

import check_layers


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_crate_itself_passes():
    assert check_layers.problems(Path(__file__).resolve().parents[2] / "src") == []


def test_an_import_from_a_higher_layer_is_reported(tmp_path):
    src = tree(tmp_path, {"config.rs": "use crate::handler::Forwarder;\n", "handler.rs": ""})
    assert check_layers.problems(src) == ["config imports handler, a higher layer"]


def test_a_cycle_within_a_layer_is_reported(tmp_path):
    src = tree(tmp_path, {"routing/mod.rs": "use crate::redact::redact;\n",
                          "redact.rs": "// crate::event in a comment is no import\nuse crate::routing::X;\n"})
    assert check_layers.problems(src) == ["import cycle: redact -> routing -> redact"]


def test_a_module_outside_the_map_is_reported(tmp_path):
    src = tree(tmp_path, {"gadget.rs": ""})
    assert check_layers.problems(src) == ["gadget: not in the layer map of tests/check_layers.py"]
