"""Config files: the built-in ones, which file a name means, and their ``defaults:`` lists,
resolved by Hydra.

A config file may start from others: ``defaults: [base]`` (Hydra's defaults list). Hydra
resolves the list (:func:`file_layers`) on a search path of two folders: the config file's own
folder, then the built-in configs (:func:`builtin_config_dir`). So ``base`` in a copied config is
a ``base.yaml`` next to it if there is one, else the built-in ``base``; an absolute path
(``/home/me/configs/base``) names that file. Hydra's rules apply: nested lists, ``.yaml``
optional, ``_self_`` (where the file's own keys go; last when not listed, so the file overrides
its defaults), ``group: option`` entries and ``# @package`` headers. A file named by its path in
the list (``base``, ``sub/extra``) is merged at the top level, as the built-in configs expect;
Hydra would place ``sub/extra`` under ``sub``.

Only the list is resolved here: each file's keys come back as a :class:`Layer`, and
:func:`~.config.load_config` merges the layers with the registry-spec rule (a layer naming
another loss class replaces the loss; Hydra would merge the two). Hydra's global state (the
``GlobalHydra`` of a running job, the working directory, its version base) is left as it was,
and nothing is written: no ``outputs/`` folder, no logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pml_proxy_anchor.training.errors import ConfigFileNotFoundError, ConfigValueError

BASE_CONFIG = "base"  # the recipe the built-in configs share; not runnable on its own
YAML = ".yaml"
# Hydra 1.1+ warns about a primary config whose defaults list does not name `_self_`; the
# built-in configs (and copies of them) rely on the default, `_self_` last.
_SELF_WARNING = r"(?s).*Defaults list is missing `_self_`"


@dataclasses.dataclass(frozen=True)
class Layer:
    """The keys one config file sets (its ``defaults:`` list removed), and the file."""

    content: dict[str, Any]
    source: str


def builtin_config_dir() -> Path:
    """The folder of the built-in configs.

    Installed: ``pml_proxy_anchor/configs`` inside the package (the wheel maps the repository's
    ``configs/`` there); in a source checkout: the repository's ``configs/`` (the same files).
    """
    packaged = Path(__file__).resolve().parents[1] / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs"


def builtin_configs() -> list[str]:
    """The names of the built-in configs (``load_config(name)`` takes them), sorted.

    ``base`` -- the recipe the others share -- is not listed: it names no data set.
    """
    folder = builtin_config_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{YAML}") if p.stem != BASE_CONFIG)


def builtin_config_summary(name: str) -> str:
    """The first comment line of the built-in config ``name`` (what it trains), for listings."""
    for line in builtin_config_path(name).read_text().splitlines():
        if line.startswith("#") and line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
    return ""


def builtin_config_path(name: str) -> Path:
    """The file of the built-in config ``name`` (a :class:`ConfigFileNotFoundError` with the
    closest names otherwise)."""
    stem = _stem(name)
    path = builtin_config_dir() / f"{stem}{YAML}"
    if path.is_file():
        return path
    known = builtin_configs()
    close = difflib.get_close_matches(stem, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigFileNotFoundError(
        f"there is no built-in config {name!r}.{hint} Built-in configs: {', '.join(known)}."
    )


def resolve_config_path(path: str | Path) -> Path:
    """The config file ``path`` names: the file itself (``.yaml`` optional), else a built-in
    config (``omniglot``, or ``configs/omniglot.yaml`` when no such file exists here)."""
    path = Path(path)
    found = _existing_yaml(path)
    if found is not None:
        return found
    # A folder of the same name (e.g. a sweep directory "omniglot/") never hides a built-in.
    if len(path.parts) == 1 or (len(path.parts) == 2 and path.parts[0] == "configs"):
        if (builtin_config_dir() / f"{_stem(path.name)}{YAML}").is_file():
            return builtin_config_dir() / f"{_stem(path.name)}{YAML}"
    if path.is_dir():
        raise ConfigFileNotFoundError(
            f"config path {path} is a directory; expected a YAML file such as "
            f"{path / 'omniglot.yaml'} or a built-in config name ({', '.join(builtin_configs())})."
        )
    here = path.parent if path.parent.is_dir() else Path(".")
    nearby = sorted(p.name for p in here.glob(f"*{YAML}"))
    close = difflib.get_close_matches(path.stem, builtin_configs(), n=3, cutoff=0.5)
    hint = f" Did you mean the built-in config {' or '.join(close)}?" if close else ""
    files = f" Config files in {here}: {', '.join(nearby)}." if nearby else ""
    raise ConfigFileNotFoundError(
        f"config file {path} does not exist.{hint}{files} Built-in configs (usable by name "
        f"from any directory): {', '.join(builtin_configs())}."
    )


def file_layers(path: Path) -> list[Layer]:
    """The layers of the config file ``path``, lowest priority first: the files of its
    ``defaults:`` list (recursively) and the file itself, in the order Hydra resolves them."""
    if not path.name.endswith(YAML):
        raise ConfigValueError(
            f"config file {path}: Hydra composes files whose name ends in {YAML}. Fix: rename "
            f"it to {path.name.rsplit('.', 1)[0]}{YAML}."
        )
    composer = _Composer(path)
    with _hydra_state_kept():
        results = composer.defaults_list()
        return [composer.layer(result) for result in results]


class _Composer:
    """Hydra's config repository for one primary config file; Hydra's errors become ours."""

    def __init__(self, path: Path) -> None:
        from hydra._internal.config_repository import CachingConfigRepository, ConfigRepository
        from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
        from hydra._internal.core_plugins.file_config_source import FileConfigSource
        from hydra._internal.sources_registry import SourcesRegistry

        self.path = path
        self.name = _stem(path.name)
        search_path = ConfigSearchPathImpl()
        for folder in dict.fromkeys([path.resolve().parent, builtin_config_dir()]):
            search_path.append("pml-proxy-anchor", f"file://{folder}")
        search_path.append("pml-proxy-anchor", "file:///")  # absolute paths in `defaults:`
        SourcesRegistry.instance().register(FileConfigSource)  # what Hydra registers itself
        self.repo = CachingConfigRepository(ConfigRepository(search_path))

    def defaults_list(self) -> list[Any]:
        """Hydra's resolved defaults list of the primary config (``ResultDefault`` items)."""
        import yaml
        from hydra._internal.defaults_list import create_defaults_list
        from hydra.errors import ConfigCompositionException, MissingConfigException
        from omegaconf.errors import OmegaConfBaseException

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_SELF_WARNING)
                found = create_defaults_list(
                    self.repo, self.name, [], prepend_hydra=False, skip_missing=False
                )
        except MissingConfigException as err:
            raise self._missing_error(err) from None
        except yaml.YAMLError as err:
            raise ConfigValueError(
                f"config file {self.path} or a file its `defaults:` list names is not valid "
                f"YAML: {err}"
            ) from None
        except RecursionError:
            raise ConfigValueError(
                f"the `defaults:` lists of {self.path} include each other in a cycle (a file "
                "lists itself, directly or through another file). Fix: remove the entry that "
                "leads back."
            ) from None
        except (ValueError, ConfigCompositionException, OmegaConfBaseException) as err:
            raise self._invalid_error(err) from None
        return list(found.defaults)

    def layer(self, result: Any) -> Layer:
        """The keys of one item of the defaults list, placed at their package."""
        loaded = self.repo.load_config(result.config_path)
        content = OmegaConf.to_container(loaded.config, resolve=False)
        if not isinstance(content, dict):
            raise _not_a_mapping(self._file(result.config_path))
        # A group entry or a `# @package` header places the keys as in Hydra; a file named by
        # its path goes to the top level.
        package = result.package if result.override_key or loaded.header.get("package") else ""
        for part in reversed([p for p in (package or "").split(".") if p]):
            content = {part: content}
        return Layer(content, str(self._file(result.config_path)))

    def _file(self, config_path: str) -> Path:
        """The file of ``config_path`` (a name in Hydra's repository)."""
        if config_path == self.name:
            return self.path
        loaded = self.repo.load_config(config_path)
        root = Path(str(loaded.path).removeprefix("file://"))
        return root / (config_path if config_path.endswith(YAML) else config_path + YAML)

    def _missing_error(self, err: Any) -> ConfigFileNotFoundError:
        """A ``defaults:`` entry (or a group option) that names no file, with the fix."""
        missing = str(err.missing_cfg_file)
        parent = re.match(r"In '([^']+)':", str(err))
        parent_file = self._file(parent.group(1)) if parent else self.path
        entry = self._entry_text(parent.group(1) if parent else self.name, missing)
        wanted = Path(entry) if Path(entry).is_absolute() else parent_file.parent / entry
        wanted = wanted.with_name(_stem(wanted.name))
        builtins = [BASE_CONFIG, *builtin_configs()]
        candidates = {p.stem for p in wanted.parent.glob(f"*{YAML}")} - {parent_file.stem}
        if len(Path(entry).parts) == 1:
            candidates |= set(builtins)
        close = difflib.get_close_matches(wanted.name, sorted(candidates), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        return ConfigFileNotFoundError(
            f"config file {parent_file} lists {entry!r} in its `defaults:`, but {wanted} (or "
            f"{wanted}{YAML}) does not exist and it is no built-in config.{hint} Fix: put "
            f"{wanted.name}{YAML} next to {parent_file.name}, change the `defaults:` entry to "
            f"the path of an existing file (relative to {parent_file.parent}), or to a built-in "
            f"config: {', '.join(builtins)}."
        )

    def _entry_text(self, parent: str, missing: str) -> str:
        """The entry of ``parent``'s ``defaults:`` list that Hydra reports as ``missing``, as
        written (Hydra drops the leading ``/`` of an absolute path)."""
        try:
            entries = self.repo.load_config(parent).defaults_list or []
        except Exception:  # noqa: BLE001 - the message falls back to Hydra's name
            return missing
        for entry in entries:
            text = getattr(entry, "path", None)
            if text is None:
                text = f"{getattr(entry, 'group', '')}/{getattr(entry, 'value', '')}"
            if _stem(str(text).lstrip("/")) == _stem(missing):
                return str(text)
        return missing

    def _invalid_error(self, err: Exception) -> ConfigValueError:
        """Hydra refused a ``defaults:`` list (its type, an entry, a duplicate ...) or a file
        that holds no mapping."""
        message = str(err).strip()
        named = re.search(r"[Ii]n '([^']+)'", message)
        where = self.path
        if named:
            with contextlib.suppress(Exception):  # the message falls back to the primary file
                where = self._file(named.group(1))
        for path in dict.fromkeys([where, self.path]):
            with contextlib.suppress(Exception):  # unreadable: reported by Hydra's message
                if not OmegaConf.is_dict(OmegaConf.load(path)):
                    return _not_a_mapping(path)
        return ConfigValueError(
            f"config file {where}: `defaults:` must be a list of config files (or "
            f"`group: option` entries), e.g. defaults: [base]. Hydra says: {message}"
        )


def _not_a_mapping(path: Path) -> ConfigValueError:
    return ConfigValueError(
        f"config file {path} must hold a mapping of keys to values at the top level."
    )


@contextlib.contextmanager
def _hydra_state_kept() -> Iterator[None]:
    """Hydra's version base (set on first use when unset) as it was before."""
    from hydra.version import VersionBase

    state = VersionBase.instance()
    before = state.version_base
    try:
        yield
    finally:
        state.version_base = before


def _stem(name: str) -> str:
    return name[: -len(YAML)] if name.endswith(YAML) else name


def _existing_yaml(path: Path) -> Path | None:
    candidates = [path]
    if path.name and not path.name.endswith((YAML, ".yml")):
        candidates.append(path.with_name(path.name + YAML))
    return next((c for c in candidates if c.is_file()), None)
