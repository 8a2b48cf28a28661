"""`rlm-local doctor`: is this machine ready to answer questions, and if not, what to do.

Each check returns findings; a finding that is not fine carries one sentence saying what to do.
Nothing here loads a model or touches the network, and model files are not re-hashed unless
asked (`full`): the store's verification record makes the default check cost a stat per model.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rlm_local.config import Settings, available_threads, default_home, user_config_path
from rlm_local.errors import ConfigError, ModelCorruptError, RlmLocalError
from rlm_local.models import ModelStore
from rlm_local.models.sources import Progress
from rlm_local.models.store import check_gguf

Level = Literal["ok", "info", "warn", "fail"]
DEFAULT_PIP_INDEX = "https://pypi.org/simple"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
LOW_DISK_BYTES = 1 << 30  # below this, the cache and traces may soon fill the disk
PULL_MARGIN_BYTES = 64 << 20  # what ModelStore wants free beyond a model's size
# llama.cpp's system-info names -> the Linux /proc/cpuinfo flags of the same features.
CPU_FLAGS = {
    "SSE3": ("pni",),
    "SSSE3": ("ssse3",),
    "AVX": ("avx",),
    "AVX2": ("avx2",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "BMI2": ("bmi2",),
    "AVX_VNNI": ("avx_vnni",),
    "AVX512": ("avx512f",),
    "AVX512_VNNI": ("avx512_vnni",),
    "NEON": ("asimd", "neon"),
}
SPEED_FEATURES = ("AVX2", "FMA", "F16C", "AVX512", "NEON")  # worth a rebuild when unused


@dataclass(frozen=True)
class Finding:
    """One line of the report; `fix` is set whenever `level` is warn or fail."""

    area: str  # llama.cpp, cpu, threads, config, model, cache, runs, network, disk
    subject: str  # what it is about: a model name and role, a directory, a feature
    level: Level
    detail: str
    fix: str | None = None
    blocks_ask: bool = False  # `rlm-local ask` cannot run until this is fixed


@dataclass(frozen=True)
class LlamaBuild:
    """What the installed llama-cpp-python says about itself, without loading a model."""

    version: str | None
    system_info: str
    features: dict[str, bool]
    gpu_offload: bool | None
    error: str | None = None


@dataclass(frozen=True)
class DoctorReport:
    home: Path
    findings: tuple[Finding, ...]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocks_ask]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level in ("warn", "fail")]

    @property
    def ready(self) -> bool:
        """True when nothing stops `rlm-local ask`; warnings may remain."""
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "ready": self.ready,
            "findings": [asdict(f) for f in self.findings],
        }


def _gib(n: int | float) -> str:
    """A size for people: 1.0 GiB, 468.6 MiB, 12.0 KiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{int(n)} bytes"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def _pinned_llama() -> str | None:
    """The llama-cpp-python version rlm-local is tested with, from its own metadata."""
    try:
        requires = importlib.metadata.requires("rlm-local") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for req in requires:
        match = re.fullmatch(r"llama-cpp-python(?:\[[^]]*\])?==([\w.]+)", req.strip())
        if match:
            return match.group(1)
    return None


def llama_build() -> LlamaBuild:
    """Import llama_cpp (this loads its shared library, not a model) and read its build info."""
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from a broken shared library
        return LlamaBuild(None, "", {}, None, error=f"{type(exc).__name__}: {exc}")
    raw = llama_cpp.llama_print_system_info()
    info = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    features = {k: v == "1" for k, v in re.findall(r"([A-Z0-9_]+) = (\d)", info)}
    try:
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except AttributeError:
        gpu = None
    return LlamaBuild(getattr(llama_cpp, "__version__", None), info.strip(), features, gpu)


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo; None where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def _reinstall_llama(pin: str | None, cmake_args: str = "") -> str:
    version = f"=={pin}" if pin else ""
    prefix = f'CMAKE_ARGS="{cmake_args}" ' if cmake_args else ""
    return f"{prefix}pip install --force-reinstall --no-cache-dir llama-cpp-python{version}"


def check_llama(settings: Settings | None, needs_local: bool) -> list[Finding]:
    build = llama_build()
    pin = _pinned_llama()
    if build.error is not None:
        return [
            Finding(
                "llama.cpp",
                "llama-cpp-python",
                "fail" if needs_local else "warn",
                f"cannot be imported ({build.error})",
                f"Reinstall it: `{_reinstall_llama(pin)}`.",
                blocks_ask=needs_local,
            )
        ]
    on = [k for k, v in build.features.items() if v]
    gpu = {True: "GPU offload built in", False: "CPU only", None: "GPU offload unknown"}
    detail = (
        f"llama-cpp-python {build.version or '?'} · {gpu[build.gpu_offload]} · "
        f"built with {' '.join(on) or 'no reported CPU features'}"
    )
    findings = [Finding("llama.cpp", "build", "ok", detail)]
    if pin and build.version and build.version != pin:
        findings.append(
            Finding(
                "llama.cpp",
                "version",
                "warn",
                f"version {build.version} is installed; rlm-local is tested with {pin}",
                f"Install the tested version: `{_reinstall_llama(pin)}`.",
            )
        )
    layers = settings.n_gpu_layers if settings else 0
    if layers > 0 and build.gpu_offload is False:
        findings.append(
            Finding(
                "llama.cpp",
                "GPU",
                "warn",
                f"RLM_LOCAL_GPU_LAYERS={layers}, but this build has no GPU offload, so it runs "
                "on the CPU",
                "For an NVIDIA GPU: "
                f"`{_reinstall_llama(pin, '-DGGML_CUDA=on')}`; else unset RLM_LOCAL_GPU_LAYERS.",
            )
        )
    findings.extend(check_cpu(build, cpu_flags(), pin))
    return findings


def check_cpu(build: LlamaBuild, flags: set[str] | None, pin: str | None) -> list[Finding]:
    """Compare what llama.cpp was built for with what this CPU can do."""
    if flags is None:
        return [Finding("cpu", "features", "info", "no /proc/cpuinfo: CPU features not checked")]
    has = {name for name, aliases in CPU_FLAGS.items() if flags.intersection(aliases)}
    shown = [n for n in CPU_FLAGS if n in has]
    findings = [Finding("cpu", "features", "ok", f"this CPU has {' '.join(shown) or 'none'}")]
    built = {k for k, v in build.features.items() if v and k in CPU_FLAGS}
    missing_in_cpu = sorted(built - has)
    if missing_in_cpu:
        findings.append(
            Finding(
                "cpu",
                "build",
                "fail",
                f"llama.cpp was built for {' '.join(missing_in_cpu)}, which this CPU lacks: "
                "it will stop with an illegal instruction",
                f"Rebuild it for this CPU: `{_reinstall_llama(pin, '-DGGML_NATIVE=on')}`.",
                blocks_ask=True,
            )
        )
    unused = [f for f in SPEED_FEATURES if f in has and build.features.get(f) is False]
    if unused:
        findings.append(
            Finding(
                "cpu",
                "build",
                "warn",
                f"this CPU has {' '.join(unused)}, but llama.cpp was built without, so it is "
                "slower than it could be",
                f"Rebuild it for this CPU: `{_reinstall_llama(pin, '-DGGML_NATIVE=on')}`.",
            )
        )
    return findings


def check_threads(settings: Settings | None) -> list[Finding]:
    usable = available_threads()
    total = os.cpu_count() or usable
    threads = settings.n_threads if settings else usable
    detail = f"{threads} threads for llama.cpp ({usable} of the machine's {total} cores usable)"
    return [Finding("threads", "llama.cpp", "ok", detail)]


def _role_label(name: str, settings: Settings) -> str:
    roles = [r for r in ("root", "sub", "labeller") if getattr(settings, r) == name]
    return f"{name} ({', '.join(roles)})" if roles else name


def _model_finding(
    store: ModelStore,
    name: str,
    settings: Settings,
    full: bool,
    progress: Progress | None,
) -> Finding:
    role = name in settings.models_in_use()
    label = _role_label(name, settings)
    status = store.status(name)
    spec = status.spec
    fail: Level = "fail" if role else "warn"
    pull = f"rlm-local models pull {name}"
    if spec.server is not None:
        urls = ", ".join(spec.server.base_urls)
        return Finding("model", label, "ok", f"served at {urls} (not contacted)")
    if not status.present:
        if not role:
            return Finding("model", label, "info", "not downloaded (not in use)")
        return Finding(
            "model",
            label,
            "fail",
            f"not downloaded (expected {status.path})",
            f"Run `{pull}`, or on a machine without network `rlm-local models import {name} FILE`.",
            blocks_ask=True,
        )
    size = _gib(status.size or 0)
    try:
        check_gguf(status.path)
    except RlmLocalError as exc:
        return Finding(
            "model",
            label,
            fail,
            str(exc).rstrip("."),
            f"Fetch it again: `rlm-local models pull --force {name}`.",
            blocks_ask=role,
        )
    if full:
        return _rehashed_finding(store, name, label, size, role, progress)
    if status.verified:
        return Finding("model", label, "ok", f"{size}, verified ({status.origin or 'unknown'})")
    if status.origin is None:  # present, never verified (copied in by hand)
        return Finding(
            "model",
            label,
            fail,
            f"{size}, present but never verified, so `ask` refuses it",
            f"Check it: `rlm-local models verify {name}`.",
            blocks_ask=role,
        )
    if spec.size is not None and status.size != spec.size and "hf:" not in status.origin:
        return Finding(
            "model",
            label,
            fail,
            f"corrupt: {status.size:,} bytes instead of {spec.size:,}",
            f"Fetch it again: `rlm-local models pull --force {name}`.",
            blocks_ask=role,
        )
    return Finding(
        "model",
        label,
        fail,
        f"{size}, changed on disk since it was verified (possibly corrupt), so `ask` refuses it",
        f"Re-check it with `rlm-local models verify {name}`; if that says corrupt, "
        f"`rlm-local models pull --force {name}`.",
        blocks_ask=role,
    )


def _rehashed_finding(
    store: ModelStore, name: str, label: str, size: str, role: bool, progress: Progress | None
) -> Finding:
    """doctor --full: the present model hashed in full against models.toml."""
    fail: Level = "fail" if role else "warn"
    try:
        store.verify(name, progress or (lambda *_: None))
    except ModelCorruptError:
        return Finding(
            "model",
            label,
            fail,
            "corrupt: its sha256 does not match models.toml",
            f"Fetch it again: `rlm-local models pull --force {name}`.",
            blocks_ask=role,
        )
    except RlmLocalError as exc:  # e.g. removed while we looked
        return Finding("model", label, fail, str(exc).rstrip("."), None, blocks_ask=role)
    return Finding("model", label, "ok", f"{size}, sha256 re-checked in full")


def _path_model_finding(role: str, value: str) -> Finding:
    path = Path(value).expanduser()
    label = f"{path.name} ({role})"
    fix = f"Give an existing .gguf file or a model name with --{role} or RLM_LOCAL_{role.upper()}."
    if not path.is_file():
        return Finding("model", label, "fail", f"{path} does not exist", fix, blocks_ask=True)
    try:
        check_gguf(path)
    except RlmLocalError as exc:
        return Finding("model", label, "fail", str(exc).rstrip("."), fix, blocks_ask=True)
    return Finding("model", label, "ok", f"{_gib(path.stat().st_size)}, a file of your own")


def check_models(
    settings: Settings, full: bool = False, progress: Progress | None = None
) -> list[Finding]:
    """Every registry model, role models first; full=True re-hashes each present file."""
    store = ModelStore(settings.registry, settings.models_dir)
    names = list(settings.registry.models)
    roles = [n for n in settings.models_in_use() if n in names]
    findings = []
    # A role given as a .gguf path instead of a name; the labeller only when set apart.
    labeller = settings.labeller if settings.labeller not in (settings.root, settings.sub) else None
    for role, value in (("root", settings.root), ("sub", settings.sub), ("labeller", labeller)):
        if value and value not in names:
            findings.append(_path_model_finding(role, value))
    for name in roles + [n for n in names if n not in roles]:
        findings.append(_model_finding(store, name, settings, full, progress))
    return findings


def _dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def check_cache(settings: Settings) -> list[Finding]:
    directory = settings.cache_dir
    limit = f"limit {settings.cache_size_mb} MB (RLM_LOCAL_CACHE_MB)"
    if not directory.is_dir():
        return [Finding("cache", str(directory), "info", f"empty: not created yet · {limit}")]
    try:
        from rlm_local.cache import CallCache

        cache = CallCache(directory, settings.cache_size_mb)
        try:
            stats = cache.stats()
        finally:
            cache.close()
    except Exception as exc:  # sqlite errors, permissions: the cache must not stop the report
        return [
            Finding(
                "cache",
                str(directory),
                "warn",
                f"cannot be read ({type(exc).__name__}: {exc})",
                f"Clear it with `rlm-local cache clear`, or delete {directory}.",
            )
        ]
    total = stats.hits + stats.misses
    rate = f", {100 * stats.hits / total:.0f}% hits" if total else ""
    entries = _plural(stats.entries, "entry", "entries")
    detail = f"{entries}, {_gib(_dir_size(directory))}{rate} · {limit}"
    return [Finding("cache", str(directory), "ok", detail)]


def check_runs(settings: Settings) -> list[Finding]:
    directory = settings.runs_dir
    traces = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    if not traces:
        return [Finding("runs", str(directory), "info", "no runs yet")]
    size = sum(p.stat().st_size for p in traces)
    detail = f"{_plural(len(traces), 'trace')}, {_gib(size)}, newest {traces[-1].stem}"
    return [Finding("runs", str(directory), "ok", detail)]


def pip_settings() -> dict[str, str]:
    """pip's configuration as `pip config list` shows it (files and PIP_* variables); no
    network. The store runs `pip download`, so these are the indexes a pull would use."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip().strip("'\"")
    return found


def _pip_option(config: dict[str, str], option: str) -> str | None:
    """pip's precedence: environment, then the command's section, then [global]."""
    for section in (":env:", "download", "global"):
        if (value := config.get(f"{section}.{option}")) is not None:
            return value
    return None


def _is_local(location: str) -> bool:
    return location.startswith("file:") or "://" not in location


def check_network(settings: Settings | None, pip_config: dict[str, str] | None) -> list[Finding]:
    """Where a pull would go, and whether anything else would use the network."""
    config = pip_config if pip_config is not None else pip_settings()
    findings = []
    served = [
        (role, settings.registry.models[name].server)
        for role in ("root", "sub")
        if settings
        and (name := getattr(settings, role)) in settings.registry.models
        and settings.registry.models[name].server is not None
    ]
    remote = [
        f"{role} at {url}"
        for role, server in served
        if server is not None
        for url in server.base_urls
        if not re.match(r"https?://(localhost|127\.|\[::1\])", url)
    ]
    if remote:
        findings.append(
            Finding("network", "ask", "info", "ask sends prompts to " + ", ".join(remote))
        )
    else:
        findings.append(Finding("network", "ask", "ok", "ask uses no network"))

    no_index = (_pip_option(config, "no-index") or "").lower() in ("1", "true", "yes", "on")
    indexes = []
    if not no_index:
        indexes.append(_pip_option(config, "index-url") or DEFAULT_PIP_INDEX)
        indexes.extend((_pip_option(config, "extra-index-url") or "").split())
    links = (_pip_option(config, "find-links") or "").split()
    places = [*indexes, *links]
    remote_pip = [p for p in places if not _is_local(p)]
    where = ", ".join(places) or "nowhere (no index, no find-links)"
    findings.append(
        Finding(
            "network",
            "pip",
            "ok",
            f"models pull (pypi sources) reads {where}"
            + ("" if remote_pip else " — all local, works offline"),
        )
    )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        hub = "HF_HUB_OFFLINE is set: hub sources use only the local hub cache"
    else:
        endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
        hub = f"models pull (hf sources) reads {endpoint}; set HF_HUB_OFFLINE=1 to forbid it"
    findings.append(Finding("network", "hub", "ok", hub))
    proxies = [
        v for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy") if v in os.environ
    ]
    if proxies:
        findings.append(Finding("network", "proxy", "info", f"{proxies[0]} is set"))
    return findings


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(home: Path, settings: Settings | None) -> list[Finding]:
    free = shutil.disk_usage(_existing(home)).free
    needed = 0
    if settings is not None:
        store = ModelStore(settings.registry, settings.models_dir)
        for name in settings.models_in_use():
            spec = settings.registry.models.get(name)
            if spec is not None and spec.server is None and not store.status(name).present:
                needed += spec.size or 0
    detail = f"{_gib(free)} free in {_existing(home)}"
    fix = "Free some space, or set RLM_LOCAL_HOME to a directory on a larger disk."
    if needed and free < needed + PULL_MARGIN_BYTES:
        return [
            Finding(
                "disk",
                str(home),
                "warn",
                f"{detail}; the missing models need {_gib(needed + PULL_MARGIN_BYTES)}",
                fix,
            )
        ]
    if free < LOW_DISK_BYTES:
        return [Finding("disk", str(home), "warn", f"{detail}; the cache and traces grow", fix)]
    return [Finding("disk", str(home), "ok", detail)]


def diagnose(
    settings: Settings | None = None,
    *,
    config_file: Path | None = None,
    full: bool = False,
    progress: Progress | None = None,
    pip_config: dict[str, str] | None = None,
) -> DoctorReport:
    """Run every check. Settings that cannot be loaded are a finding, not an exception, so the
    rest of the report still helps; `pip_config` replaces the `pip config list` call in tests."""
    findings: list[Finding] = []
    if settings is None:
        from rlm_local.config import load_settings

        try:
            settings = load_settings(config_file=config_file)
        except ConfigError as exc:
            path = config_file or user_config_path()
            findings.append(
                Finding(
                    "config",
                    str(path),
                    "fail",
                    str(exc),
                    f"Correct {path} or the RLM_LOCAL_* variables it names.",
                    blocks_ask=True,
                )
            )
    home = settings.home if settings else default_home()
    if settings is not None:
        user_file = config_file or user_config_path()
        note = "read" if user_file.is_file() else "none (packaged models.toml only)"
        findings.append(Finding("config", str(user_file), "ok", f"user model file: {note}"))
    needs_local = settings is None or any(
        (spec := settings.registry.models.get(getattr(settings, r))) is None or spec.server is None
        for r in ("root", "sub")
    )
    findings.extend(check_llama(settings, needs_local))
    findings.extend(check_threads(settings))
    if settings is not None:
        findings.extend(check_models(settings, full, progress))
        findings.extend(check_cache(settings))
        findings.extend(check_runs(settings))
    findings.extend(check_network(settings, pip_config))
    findings.extend(check_disk(home, settings))
    return DoctorReport(home=home, findings=tuple(findings))
