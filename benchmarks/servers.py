"""Local OpenAI-compatible servers of the sub-model, for comparing served with in-process sub-calls.

Each is llama-cpp-python's own server (`python -m llama_cpp.server`) bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlm_local.config import ModelSpec, ServerSpec
from rlm_local.models import ResolvedModel

SERVED_NAME = "sub"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: ResolvedModel, port: int, log: Path, threads: int = 1, n_ctx: int | None = None
) -> subprocess.Popen[bytes]:
    """One server in its own process group, so a kill takes its children too."""
    options = {
        "--model": str(model.path),
        "--model_alias": SERVED_NAME,
        "--host": "127.0.0.1",
        "--port": str(port),
        "--n_ctx": str(n_ctx or model.n_ctx),
        "--n_threads": str(threads),
        "--n_threads_batch": str(threads),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", *(x for kv in options.items() for x in kv)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextmanager
def sub_servers(model: ResolvedModel, count: int, threads: int = 1) -> Iterator[ModelSpec]:
    """Start `count` servers of `model`; yields a served-model spec naming all of them."""
    logs = Path(tempfile.mkdtemp(prefix="rlm-servers-"))
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for i in range(count):
            port = free_port()
            procs.append(start_server(model, port, logs / f"server{i}.log", threads=threads))
            urls.append(f"http://127.0.0.1:{port}/v1")
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(url, proc)
        yield ModelSpec(
            name=f"{model.name}@{count}-servers",
            server=ServerSpec(base_urls=tuple(urls), model=SERVED_NAME, sha256=model.sha256),
            n_ctx=model.n_ctx,
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sub-model server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the sub-model server at {url} did not start within {timeout} s")
