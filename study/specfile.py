"""Space files on disk: ``searchspaces/*.yaml`` by name (or any YAML file by path), read into a
tree, with ``--set`` overrides applied, and validated into a ``Spec`` (``study.space``).

    load_spec("rotation_ablation", ["rollingq.beta=0.1", "seeds=[0,1]"])
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from rollingq.config import ConfigError, parse_override, unknown_key_hint, valid_keys
from study.space import PARAM_FIELDS, ROOT, SECTIONS, Spec, SpecError, parse_spec

SPACES_DIR = ROOT / "searchspaces"


def available_spaces() -> dict[str, str]:
    """Space name -> its one-line question, for every file in ``searchspaces/``."""
    return {p.stem: _question(p.read_text()) for p in sorted(SPACES_DIR.glob("*.yaml"))}


def _question(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def resolve(name: str) -> Path:
    """A space name (``rotation_ablation``) or a path to a YAML file -> the file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = SPACES_DIR / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    names = ", ".join(available_spaces()) or "none"
    raise SpecError(f"unknown space {name!r}: no searchspaces/{name}.yaml and no such file; "
                    f"available: {names}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}{where}: malformed YAML: {problem}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise SpecError(f"{path}: a space file must be a mapping with sections "
                        f"{', '.join(SECTIONS)}")
    return tree


def _set_path(tree: dict[str, Any], dotted: list[str], value: Any) -> None:
    node = tree
    for part in dotted[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"cannot set {'.'.join(dotted)}: {part} is not a mapping")
    node[dotted[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set`` values: a config key goes to ``fixed`` (and leaves ``search``); a spec field
    (``tune.num_samples=8``, ``seeds=[0, 1]``, ``search.rollingq.beta.values=[0, 0.1]``,
    ``claims.margins.6=1.0``, ``sequential.budget=20``) is set in place."""
    tree = copy.deepcopy(tree)
    config_keys = set(valid_keys())
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ConfigError as e:
            raise SpecError(str(e)) from None
        if key in config_keys:
            tree.setdefault("fixed", {})
            tree["fixed"] = dict(tree["fixed"] or {})
            tree["fixed"][key] = value
            search = tree.get("search") or {}
            search.pop(key, None)
        elif key == "seeds" or key.startswith(("tune.", "claims.", "sequential.")):
            _set_path(tree, key.split("."), value)
        elif key.startswith("search."):
            rest = key[len("search."):]
            param, _, attr = rest.rpartition(".")
            if param not in config_keys or attr not in PARAM_FIELDS:
                raise SpecError(f"--set {key}: expected search.<config key>.<field> with field one "
                                f"of {', '.join(sorted(PARAM_FIELDS))}")
            tree.setdefault("search", {}).setdefault(param, {})[attr] = value
        else:
            raise SpecError(f"--set {key}: not a config key nor a spec field (tune.*, claims.*, "
                            f"sequential.*, seeds, search.<key>.<field>); "
                            f"{unknown_key_hint(key, config_keys)}")
    return tree


def load_spec(name: str, overrides: list[str] | None = None) -> Spec:
    """Reads, overrides and validates a space by name or path."""
    path = resolve(name)
    text = path.read_text()
    tree = apply_overrides(_read_yaml(path), overrides or [])
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    question = tree.get("question") or _question(text)
    return parse_spec(tree, tree.get("name") or path.stem, str(rel), question)
