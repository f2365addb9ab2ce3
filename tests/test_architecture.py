"""The shape of the package: no import cycle (counting imports inside functions too, where cycles hide), the CLI
stays thin, and the runtime path never needs torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import BLOCK_TORCH, BROKEN_TORCH

PACKAGE = Path(__file__).resolve().parent.parent / "rat_monitor"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set[str]:
    """Every rat_monitor module PATH imports, wherever the import statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("rat_monitor"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` imports module x
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rat_monitor"))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in internal_imports(path) if t in modules and t != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "rat_monitor.classify.base" in graph and graph["rat_monitor.cli"]  # the graph is really read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cli_stays_thin():
    """Option parsing, exit codes and printing in modules of a few hundred lines; the work is in the library."""
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert {"app.py", "views.py", "run.py"} <= set(sizes) and max(sizes.values()) < 350, sizes


def test_the_runtime_path_never_imports_torch():
    """A user who installed only the runtime (make demo) loads both bundled models and every command's module
    without torch; a torch that cannot be imported proves it."""
    code = (BLOCK_TORCH + "import rat_monitor.cli, rat_monitor.pipeline, rat_monitor.batch, rat_monitor.sinks.report\n"
            "from rat_monitor.classify import load_classifier\nfrom rat_monitor.detect import load_detector\n"
            "load_classifier('lbp-svm-synthetic'); load_detector('rat-face-detector'); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]




def test_training_a_kind_that_needs_torch_names_the_extra_to_install():
    code = BLOCK_TORCH + ("from rat_monitor.classify.evaluate import Trainer\nfrom rat_monitor.errors import ConfigError\n"
                          "try:\n  Trainer('resnet18', 'binary')\nexcept ConfigError as e:\n  print(e)\n"
                          "Trainer('lbp-svm', 'binary'); print('lbp-svm trains without torch')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pip install 'rat-monitor[train]'" in proc.stdout and "lbp-svm trains without torch" in proc.stdout


@pytest.mark.parametrize("command", [["detector", "train", "--out", "{tmp}/det"], ["label", "train", "{tmp}"]])
def test_training_commands_without_torch_name_the_extra_at_once(command, tmp_path):
    """Without torch, `detector train` (which would render 4,000 frames first) and `label train` stop at once
    with one line naming the extra, printed as written (not eaten as terminal markup), and exit 2."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    code = BLOCK_TORCH + f"from rat_monitor.cli import app\napp({args!r})"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pip install 'rat-monitor[train]'" in proc.stderr and "Traceback" not in proc.stderr
    assert time.time() - t0 < 30 and not (tmp_path / "det").exists()


@pytest.mark.parametrize("command", [["detector", "train", "--out", "{tmp}/det"],
                                     ["train", "--kind", "resnet18", "--data", "{tmp}/m.csv", "--out", "{tmp}/m"]])
def test_a_broken_torch_install_is_named_in_one_line_not_a_traceback(command, tmp_path):
    """A torch whose import raises (a missing shared library) is told apart from a missing one: one line that
    says it is installed but does not import, and how to reinstall it; exit 2."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    (tmp_path / "m.csv").write_text("path,subject,label\n")
    proc = subprocess.run([sys.executable, "-c", BROKEN_TORCH + f"from rat_monitor.cli import app\napp({args!r})"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "does not import (OSError: libtorch_cpu.so" in proc.stderr and "--force-reinstall" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unknown_model_kind_is_a_settings_error(tmp_path):
    from typer.testing import CliRunner

    from rat_monitor.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--kind", "svm-lbp", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "unknown model kind 'svm-lbp'" in result.output
