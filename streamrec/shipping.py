"""What `streamrec job submit` ships to TaskManagers that cannot see this checkout.

The job's Python runs on the TaskManagers (in their JVM in thread mode, in worker processes in
process mode), so they need a Python with streamrec and its dependencies. A TaskManager on another
host has neither this repository nor its venv, and a venv is not relocatable (its interpreter is a
link to this machine's Python, its scripts name absolute paths). So the job ships one zip archive,
a whole Python home, through ``flink run -pyarch ARCHIVE#pyenv -pyexec pyenv/bin/python``:

* ``bin/python3.X``, ``lib/libpython3.X.so.1.0`` and ``lib/python3.X/`` (the standard library less
  its tests, IDLE, tkinter and the static library): the submitting interpreter itself, which finds
  its standard library next to itself wherever it is unpacked; ``bin/python`` is a launcher that
  points the loader at ``lib/`` (the interpreter's own RUNPATH names this machine's folder);
* ``lib/python3.X/site-packages/``: streamrec and every distribution it needs, copied file by file
  from the submitting environment (the versions the tests ran: nothing is resolved again, nothing
  is downloaded), less the Flink jars of the apache-flink-libraries wheel (a cluster has Flink
  already) and the packages only the CLI's other commands import (``SHIPPED_WITHOUT``).

So a TaskManager needs no Python of its own, only Linux x86_64 with a glibc (and OpenSSL 3) no
older than the submitting machine's. In thread mode Flink starts the embedded interpreter with
PYTHONHOME set to the unpacked archive, so the archive must be a Python home: a site-packages
folder alone on the cluster's interpreter works in process mode only. Flink unpacks the archive
once per job on each TaskManager.

The jars travel separately: the job names them with ``env.add_jars`` (``pipeline.jars``), and
``flink run`` uploads them with the job graph to the JobManager's blob server, where the
TaskManagers fetch them.

The alternative, ``-pyreq requirements.txt`` with the wheel, installs every dependency with pip on
every TaskManager at every job start (minutes for pandas/pyarrow on 2 cores) and needs a Python
with pip and the wheels (or an index) there; the archive costs one build per change of code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import os
import re
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from packaging.requirements import Requirement

log = logging.getLogger(__name__)

# The name the archive is unpacked under on a TaskManager (`-pyarch FILE#pyenv`), and the
# interpreter path the job gives Flink relative to the Python worker's working folder.
ARCHIVE_DIR = "pyenv"
PYEXEC = f"{ARCHIVE_DIR}/bin/python"

# Requirements of streamrec that only other commands import (the HTTP service, plots): their
# packages are left out unless another shipped distribution needs them too. The e2e test on an
# isolated TaskManager is what shows that the job runs without them.
SHIPPED_WITHOUT = frozenset({
    "fastapi", "uvicorn", "prometheus-client", "swagger-ui-py", "matplotlib", "rich",
})

# Bumped when the archive's layout or launcher changes, so that a cached archive is rebuilt.
LAYOUT_VERSION = "1"
# Archives kept in the cache folder (~220 MB each); older ones are removed by the next build.
KEEP_ARCHIVES = 3

LAUNCHER = """#!/bin/sh
# streamrec's shipped Python (streamrec/shipping.py): the interpreter next to this script, with its
# shared library from this archive rather than from the folder it was built in.
here=$(cd "$(dirname "$0")/.." && pwd)
LD_LIBRARY_PATH="$here/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
export LD_LIBRARY_PATH
exec "$here/bin/{binary}" "$@"
"""

# Parts of the standard library no job imports (~190 MB of the ~220 MB).
STDLIB_WITHOUT = frozenset({"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo",
                            "ensurepip", "lib2to3", "__pycache__"})


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions(root: str = "streamrec",
                          without: Iterable[str] = SHIPPED_WITHOUT) -> list[md.Distribution]:
    """The installed distributions ``root`` needs at run time (no extras), less ``without`` and
    whatever only they need."""
    skipped = {_key(n) for n in without}
    seen: dict[str, md.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = _key(name)
        if key in seen or key in skipped:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError as exc:
            raise RuntimeError(f"{name} is needed by the job but not installed here") from exc
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [seen[k] for k in sorted(seen)]


def _shipped(rel: str) -> bool:
    parts = rel.split("/")
    if parts[0] == ".." or "__pycache__" in parts or rel.endswith(".pyc"):
        return False  # console scripts outside site-packages; bytecode is rebuilt where it runs
    # The Flink distribution inside the apache-flink-libraries wheel (~320 MB of jars, its scripts):
    # the client needs it to submit, a TaskManager has its own.
    return not (parts[0] == "pyflink" and len(parts) > 1 and parts[1] in ("lib", "opt", "plugins", "bin"))


def _own_package_files() -> Iterator[tuple[str, Path]]:
    # streamrec itself, from wherever it is imported (an editable install has no file list)
    pkg = Path(__file__).resolve().parent
    for path in sorted(pkg.rglob("*")):
        rel = path.relative_to(pkg.parent).as_posix()
        if path.is_file() and _shipped(rel):
            yield rel, path


def archive_files(dists: Iterable[md.Distribution]) -> list[tuple[str, Path]]:
    """(path inside site-packages, file here) for everything the archive holds."""
    files: dict[str, Path] = dict(_own_package_files())
    for dist in dists:
        if _key(dist.metadata["Name"]) == "streamrec":
            continue
        for f in dist.files or []:
            rel = f.as_posix()
            if _shipped(rel) and not rel.startswith("streamrec/"):
                path = Path(str(dist.locate_file(f)))
                if path.is_file():
                    files.setdefault(rel, path)
    return sorted(files.items())


def interpreter_files() -> list[tuple[str, Path]]:
    """(path inside the archive, file here) for the submitting interpreter and its standard library."""
    version = sysconfig.get_config_var("VERSION")
    stdlib = Path(sysconfig.get_path("stdlib"))
    binary = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    files = [(f"bin/python{version}", binary)]
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname and (Path(libdir) / soname).is_file():
        files.append((f"lib/{soname}", Path(libdir) / soname))
    else:
        # Thread mode loads libpython into the TaskManager's JVM; process mode needs none.
        log.warning("%s is not a shared-library build: the shipped Python works in process mode only", binary)
    for path in sorted(stdlib.rglob("*")):
        rel = path.relative_to(stdlib)
        if path.is_file() and not STDLIB_WITHOUT.intersection(rel.parts) and path.suffix not in (".pyc", ".a"):
            files.append((f"lib/python{version}/{rel.as_posix()}", path))
    return files


@dataclass(frozen=True)
class ShippedEnv:
    path: Path
    size_bytes: int
    files: int
    built: bool  # False: reused from the cache
    seconds: float


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile by another build
        return 0.0


def build_archive(out_dir: Path) -> ShippedEnv:
    """The archive of this interpreter, streamrec and its dependencies, built once per content in
    ``out_dir`` (an unchanged checkout submits the cached one)."""
    started = time.monotonic()
    version = sysconfig.get_config_var("VERSION")
    binary = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    site = f"lib/python{version}/site-packages"
    files = interpreter_files() + [(f"{site}/{rel}", path) for rel, path in archive_files(runtime_distributions())]
    digest = hashlib.sha256(f"{LAYOUT_VERSION}\n{binary}\n".encode())
    for rel, path in files:
        st = path.stat()
        # name, size and mtime find a changed file without reading ~700 MB; streamrec's own files,
        # which change as one works, by content
        own = rel.startswith(f"{site}/streamrec/")
        stamp = hashlib.sha256(path.read_bytes()).hexdigest() if own else st.st_mtime_ns
        digest.update(f"{rel}\0{st.st_size}\0{stamp}\n".encode())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"streamrec-pyenv-{digest.hexdigest()[:16]}.zip"
    if target.exists():
        return ShippedEnv(target, target.stat().st_size, len(files), False, time.monotonic() - started)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        # level 1: nearly all of the size is compiled libraries, which level 6 shrinks no further
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            launcher = zipfile.ZipInfo("bin/python", date_time=(2020, 1, 1, 0, 0, 0))
            launcher.external_attr = 0o100755 << 16  # Flink keeps a file's mode when it unpacks
            zf.writestr(launcher, LAUNCHER.format(binary=f"python{version}"))
            for rel, path in files:
                zf.write(path, rel)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    # Keep a few: another submit from this checkout (a parallel test session) may be uploading one.
    archives = sorted(out_dir.glob("streamrec-pyenv-*.zip"), key=_mtime, reverse=True)
    for old in archives[KEEP_ARCHIVES:]:
        if old != target:
            old.unlink(missing_ok=True)
    shipped = ShippedEnv(target, target.stat().st_size, len(files), True, time.monotonic() - started)
    log.info("built %s (%d files, %.0f MB) in %.1f s", target, shipped.files, shipped.size_bytes / 1e6,
             shipped.seconds)
    return shipped


def flink_run_args(archive: Path, client_python: Optional[str] = None) -> list[str]:
    """The `flink run` options that ship ``archive`` and run the job's Python from it."""
    return ["-pyarch", f"{archive}#{ARCHIVE_DIR}", "-pyexec", PYEXEC,
            "-pyclientexec", client_python or sys.executable]
