"""How far a reader walks to follow one value through the code: files crossed, stays, climbs.

Starting at a function and one of its parameters, the walk follows the value through the
source as a reader would: inside a function, names assigned from it (or looped over it, or
bound by `with ... as`) carry it on; a call that passes it enters the called project function
(plain functions, tasks through `.fn`/`.submit`/`.map`, classes through `__init__`, methods of
objects built in the same function or annotated with a project class), with the value bound to
the matching parameter. Each function is read once. The walk prints the files in the order a
reader meets them:

- files: distinct files crossed;
- stays: runs of reading in one file (returning to the caller's file starts a new stay);
- climbs back: calls into a file already read earlier (other than the one being read): the
  reader goes back up to a file they had left.

    python -m bench.walks                         # the two walks the layout is measured by
    python -m bench.walks flows/upload.py upload_designs paths
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"designflow": "designflow", "flows": "designflow.flows", "tasks": "designflow.tasks",
            "deployments": "designflow.deployments"}  # fmt: skip
TASK_WRAPPERS = {"fn", "submit", "map", "with_options"}


@dataclass
class Module:
    name: str
    path: Path
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)  # "f" or "Cls.m"
    classes: set[str] = field(default_factory=set)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (mod, sym)


def load_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            modules[name] = _read_module(name, path)
    return modules


def _read_module(name: str, path: Path) -> Module:
    module = Module(name, path)
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (alias.name, None)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            module.classes.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    module.functions[f"{node.name}.{item.name}"] = item
    return module


def _mentions(expr: ast.AST, tracked: set[str]) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and node.id in tracked:
            return True
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and f"{node.value.id}.{node.attr}" in tracked):  # fmt: skip
            return True
    return False


# Calls that hand the same value on in another form (a list of the paths is still the paths).
SAME_VALUE_CALLS = {"list", "tuple", "sorted", "set", "str", "Path", "PurePosixPath", "iter"}


def _carries(expr: ast.AST, tracked: set[str]) -> bool:
    """Whether the expression is the followed value itself (or a part or a copy of it), not
    something computed from it."""
    if isinstance(expr, ast.Name):
        return expr.id in tracked
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        return f"{expr.value.id}.{expr.attr}" in tracked or expr.value.id in tracked
    if isinstance(expr, ast.Starred | ast.Subscript):
        return _carries(expr.value, tracked)
    if isinstance(expr, ast.List | ast.Tuple | ast.Set):
        return any(_carries(e, tracked) for e in expr.elts)
    if isinstance(expr, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) and _carries(v.value, tracked)
                   for v in expr.values)  # fmt: skip
    if isinstance(expr, ast.BoolOp | ast.IfExp):
        parts = expr.values if isinstance(expr, ast.BoolOp) else [expr.body, expr.orelse]
        return any(_carries(p, tracked) for p in parts)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        return expr.func.id in SAME_VALUE_CALLS and any(_carries(a, tracked) for a in expr.args)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        # a method of the value that gives it back reshaped: inbox.rstrip("/")
        return expr.func.attr in {"rstrip", "strip", "lstrip", "removeprefix", "removesuffix"} and (
            _carries(expr.func.value, tracked)
        )
    return False


def _target_names(target: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
    return names


def _bindings(func: ast.AST) -> list[tuple[ast.AST, ast.AST]]:
    """(target, value) pairs: assignments, for loops, with-as, comprehensions, walrus."""
    pairs: list[tuple[ast.AST, ast.AST]] = []
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            pairs += [(t, node.value) for t in node.targets]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr) and node.value:
            pairs.append((node.target, node.value))
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            pairs.append((node.target, node.iter))
        elif isinstance(node, ast.With | ast.AsyncWith):
            pairs += [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars]
    return pairs


class Walk:
    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.read: set[tuple[str, str]] = set()
        self.trail: list[str] = []  # file of each stretch of reading, in order
        self.climbs = 0

    def _visit_file(self, path: Path, by_call: bool) -> None:
        name = str(path.relative_to(ROOT))
        if self.trail and self.trail[-1] == name:
            return
        if by_call and name in self.trail:
            self.climbs += 1
        self.trail.append(name)

    def follow(self, module: Module, qualname: str, params: set[str], by_call: bool) -> None:
        if (module.name, qualname) in self.read:
            return
        self.read.add((module.name, qualname))
        func = module.functions[qualname]
        self._visit_file(module.path, by_call)
        tracked = set(params)
        pairs = _bindings(func)
        for _ in range(len(pairs) + 1):  # until no new name is bound from a tracked one
            new = {n for t, v in pairs if _carries(v, tracked) for n in _target_names(t)}
            if new <= tracked:
                break
            tracked |= new
        types = self._local_types(module, func)
        calls = [n for n in ast.walk(func) if isinstance(n, ast.Call)]
        for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
            arguments = [*call.args, *(k.value for k in call.keywords)]
            if not any(_carries(a, tracked) for a in arguments):
                continue
            target = self._resolve(module, qualname, call.func, types)
            if target is None:
                continue
            callee_module, callee = target
            bound = self._bind(callee_module.functions[callee], call, tracked)
            if bound:
                self.follow(callee_module, callee, bound, by_call=True)
                self._visit_file(module.path, by_call=False)

    def _bind(self, func: ast.FunctionDef, call: ast.Call, tracked: set[str]) -> set[str]:
        params = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
        if params and params[0] in ("self", "cls"):
            params = params[1:]
        bound = {params[i] for i, a in enumerate(call.args)
                 if i < len(params) and not isinstance(a, ast.Starred) and _carries(a, tracked)}  # fmt: skip
        bound |= {k.arg for k in call.keywords if k.arg and _carries(k.value, tracked)}
        return bound

    def _local_types(self, module: Module, func: ast.FunctionDef) -> dict[str, tuple[Module, str]]:
        """Names bound to a project class: built here (`x = Cls(...)`) or annotated."""
        types: dict[str, tuple[Module, str]] = {}
        for arg in (*func.args.args, *func.args.kwonlyargs):
            if isinstance(arg.annotation, ast.Name):
                found = self._class(module, arg.annotation.id)
                if found:
                    types[arg.arg] = found
        for node in ast.walk(func):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name)):  # fmt: skip
                found = self._class(module, node.value.func.id)
                if found:
                    types.update({n: found for t in node.targets for n in _target_names(t)})
        return types

    def _class(self, module: Module, name: str) -> tuple[Module, str] | None:
        if name in module.classes:
            return module, name
        if name in module.imports:
            source, symbol = module.imports[name]
            other = self.modules.get(source)
            if other and symbol in other.classes:
                return other, symbol
        return None

    def _function(self, module: Module, name: str) -> tuple[Module, str] | None:
        if name in module.functions:
            return module, name
        found = self._class(module, name)
        if found and f"{found[1]}.__init__" in found[0].functions:
            return found[0], f"{found[1]}.__init__"
        if name in module.imports:
            source, symbol = module.imports[name]
            other = self.modules.get(source)
            if other and symbol and symbol in other.functions:
                return other, symbol
        return None

    def _resolve(self, module: Module, qualname: str, func: ast.AST, types) -> tuple | None:
        if isinstance(func, ast.Name):
            return self._function(module, func.id)
        if not isinstance(func, ast.Attribute):
            return None
        if func.attr in TASK_WRAPPERS and isinstance(func.value, ast.Name):
            return self._function(module, func.value.id)
        if not isinstance(func.value, ast.Name):
            return None
        owner = func.value.id
        if owner == "self" and "." in qualname:
            name = f"{qualname.split('.')[0]}.{func.attr}"
            return (module, name) if name in module.functions else None
        if owner in types:
            cls_module, cls = types[owner]
            name = f"{cls}.{func.attr}"
            return (cls_module, name) if name in cls_module.functions else None
        if owner in module.imports:
            source, symbol = module.imports[owner]
            other = self.modules.get(f"{source}.{symbol}" if symbol else source)
            if other and func.attr in other.functions:
                return other, func.attr
        return None


def walk(path: str, function: str, parameter: str) -> Walk:
    modules = load_modules()
    start = next(m for m in modules.values() if m.path == ROOT / path)
    result = Walk(modules)
    result.follow(start, function, {parameter}, by_call=False)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("walk", nargs="*", help="FILE FUNCTION PARAMETER (default: the two)")
    args = parser.parse_args()
    walks = [args.walk] if args.walk else [
        ["flows/upload.py", "upload_designs", "paths"],
        ["flows/sweep.py", "sweep_inbox", "inbox"],
    ]  # fmt: skip
    for path, function, parameter in walks:
        found = walk(path, function, parameter)
        print(f"`{parameter}` from {function}: {len(set(found.trail))} files, "
              f"{len(found.trail)} stays, {found.climbs} climbs back")  # fmt: skip
        print("   " + " > ".join(found.trail))


if __name__ == "__main__":
    main()
