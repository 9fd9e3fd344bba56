"""Native code: compile a C kernel at first use, cache it where only its user can write, and load it only
after checking it.

Two kernels use this module: beta-TCVAE's minibatch aggregate posterior (``_aggregate_kernel.c``, Eq. 3) and
the mixture sums of Chen et al.'s MIG (``_mig_kernel.c``, Sec. 4). Each is built with the system's C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``) into a per-user cache:

- the cache directory (``$XDG_CACHE_HOME/isa_lib``, else ``~/.cache/isa_lib``; a per-user directory in the
  temp directory only when that cannot be created) must be a real directory owned by the user and writable by
  no one else, or it is refused with :class:`NativeCacheError`;
- a library's file name carries a key over its sources, the flags, the compiler and its version, and the
  CPU's features (the compiler's own ``-march=native`` macros, on every platform, plus ``/proc/cpuinfo``'s
  feature line where there is one), so a copied cache never loads code built for another CPU;
- the build writes to unique temporary names under a lock and renames them into place; the library's SHA-256
  is recorded beside it at build time and checked, with the file's owner and mode, before every load. A
  library that fails the check is rebuilt (with a warning naming it), never loaded.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:         # not POSIX: the in-process lock and unique temporary names still hold
    fcntl = None

#: Flags of every native kernel (OpenMP threads; no errno or trap semantics, so that loops vectorise).
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")

_HERE = Path(__file__).resolve().parent
_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL] = {}


class NativeCacheError(RuntimeError):
    """The cache directory cannot be trusted (owned by someone else, writable by others, not a directory)."""


class NativeBuildError(RuntimeError):
    """No usable C compiler, or compiling a kernel failed."""


def pointer(t) -> ctypes.c_void_p:
    """The address of a tensor's data, for a kernel's ``void *`` argument (the caller keeps it contiguous)."""
    return ctypes.c_void_p(t.data_ptr())


def compiler() -> str:
    """The C compiler: ``$CC`` if set (it must be an executable), else the first of cc, gcc, clang."""
    cc = os.environ.get("CC")
    if cc:
        path = shutil.which(cc)
        if path is None:
            raise NativeBuildError(f"CC={cc!r} is not an executable C compiler on this machine; "
                                   f"unset CC or point it at cc, gcc or clang")
        return path
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise NativeBuildError("the native kernels are compiled at first use and found no C compiler (cc, gcc or "
                           "clang); install one (e.g. apt-get install gcc), or use the torch path")


def available() -> bool:
    """Whether a C compiler is there (the native kernels can be built)."""
    try:
        compiler()
    except NativeBuildError:
        return False
    return True


def _run(args, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NativeBuildError(f"{what}: running {args[0]!r} failed ({err}); is it a C compiler?") from err


def cpu_signature(cc: str) -> str:
    """What a ``-march=native`` build depends on: the machine, and the CPU's features as the compiler sees
    them (its predefined macros under -march=native, which name every instruction set it will use, on any
    platform), plus /proc/cpuinfo's feature line on Linux (``flags`` on x86, ``Features`` on ARM)."""
    parts = [platform.machine(), platform.system()]
    done = _run([cc, "-march=native", "-dM", "-E", "-x", "c", os.devnull], "reading the CPU's features")
    if done.returncode == 0:
        parts.append("\n".join(sorted(done.stdout.splitlines())))
    else:   # a compiler without -march=native (or a fake one): the build below will say so
        parts.append(done.stderr[-200:])
    try:
        with open("/proc/cpuinfo") as f:
            parts += sorted({line.split(":", 1)[1].strip() for line in f
                             if line.split(":", 1)[0].strip().lower() in ("flags", "features", "isa")})
    except OSError:
        pass
    return "\n".join(parts)


def _check_private(path: Path, what: str) -> os.stat_result:
    """``path`` must not be a symbolic link, must be owned by this user and writable by no one else."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise NativeCacheError(f"{what} {path} is a symbolic link; native code is only loaded from a real "
                               f"directory of the user's own")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise NativeCacheError(f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid "
                               f"{os.getuid()}); refusing to load native code from it. Remove it, or set "
                               f"XDG_CACHE_HOME to a directory of your own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise NativeCacheError(f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o});"
                               f" refusing to load native code from it. chmod go-w it, or set XDG_CACHE_HOME")
    return st


def cache_dir() -> Path:
    """The per-user cache of built kernels, created private (mode 700) and checked (:func:`_check_private`)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "isa_lib"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        path = Path(tempfile.gettempdir()) / f"isa_lib-{uid}"
        path.mkdir(mode=0o700, exist_ok=True)
    st = _check_private(path, "the native-code cache")
    if not stat.S_ISDIR(st.st_mode):
        raise NativeCacheError(f"the native-code cache {path} is not a directory")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(cache: Path, final: Path, data: bytes | None = None, produce=None) -> None:
    """Write ``final`` through a unique temporary name in ``cache`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=final.name + ".", suffix=".tmp")
    try:
        if data is not None:
            os.write(fd, data)
        os.close(fd)
        fd = -1
        if produce is not None:
            produce(Path(tmp))
        os.chmod(tmp, 0o600 if data is not None else 0o700)
        os.replace(tmp, final)
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _verified(lib: Path) -> bool:
    """The library exists, is private, and its SHA-256 matches the one recorded when it was built."""
    digest = lib.with_name(lib.name + ".sha256")
    if not lib.exists() and not digest.exists():
        return False
    problem = None
    try:
        for p, what in ((lib, "the native library"), (digest, "its digest")):
            if not stat.S_ISREG(_check_private(p, what).st_mode):
                problem = f"{p} is not a regular file"
        if problem is None and digest.read_text().strip() != _sha256(lib):
            problem = f"{lib.name}'s SHA-256 does not match the digest recorded when it was built"
    except FileNotFoundError as err:
        problem = f"{err.filename} is missing"
    except NativeCacheError as err:
        problem = str(err)
    if problem is not None:
        warnings.warn(f"native code cache: {problem}; rebuilding it instead of loading it", RuntimeWarning,
                      stacklevel=4)
        for p in (lib, digest):
            if p.is_symlink() or p.is_file():
                p.unlink()
        return False
    return True


def build(name: str, source: str, depends: tuple[str, ...] = (), flags: tuple[str, ...] = FLAGS) -> Path:
    """Compile ``source`` (a file next to this module, with the headers it includes named in ``depends``)
    into the cache, unless a verified build with the same key is there; returns the library's path."""
    cc = compiler()
    src = _HERE / source
    version = _run([cc, "--version"], f"asking {cc} its version")
    if version.returncode != 0:
        raise NativeBuildError(f"{cc} --version failed ({version.stderr.strip()[-300:]}); CC must be a C compiler")
    texts = [(_HERE / f).read_text() for f in (source, *depends)]
    key = hashlib.sha256("\n\0".join([*texts, " ".join(flags), cc, version.stdout,
                                      cpu_signature(cc)]).encode()).hexdigest()[:20]
    cache = cache_dir()
    lib = cache / f"{name}_{key}.so"
    lock_file = open(cache / ".lock", "a") if fcntl is not None else None
    try:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _verified(lib):
            return lib

        def compile_to(tmp: Path) -> None:
            done = _run([cc, *flags, "-I", str(_HERE), str(src), "-o", str(tmp), "-lm"], f"compiling {source}")
            if done.returncode != 0:
                raise NativeBuildError(f"compiling {source} with {cc} failed:\n{done.stderr[-2000:]}")
            if tmp.stat().st_size == 0:
                raise NativeBuildError(f"compiling {source} with {cc} failed: it exited 0 but wrote no library; "
                                       f"is {cc} a C compiler?")

        _write_atomic(cache, lib, produce=compile_to)
        _write_atomic(cache, lib.with_name(lib.name + ".sha256"), data=_sha256(lib).encode())
        return lib
    finally:
        if lock_file is not None:
            lock_file.close()       # releases the lock


def load(name: str, source: str, depends: tuple[str, ...] = ()) -> ctypes.CDLL:
    """The kernel ``name`` built from ``source`` (:func:`build`), verified and loaded once per process."""
    with _LOCK:
        if name not in _LOADED:
            lib = build(name, source, depends)
            # checked again just before the load: the directory is private, so nothing else can swap it after
            if _sha256(lib) != lib.with_name(lib.name + ".sha256").read_text().strip():
                raise NativeCacheError(f"{lib} changed between its check and its load; not loading it")
            try:
                _LOADED[name] = ctypes.CDLL(str(lib))
            except OSError as err:      # not a loadable library (e.g. a fake compiler's output): never kept
                for p in (lib, lib.with_name(lib.name + ".sha256")):
                    p.unlink(missing_ok=True)
                raise NativeBuildError(f"{lib.name}, built from {source}, could not be loaded ({err}); "
                                       f"check the C compiler (CC)") from err
        return _LOADED[name]
