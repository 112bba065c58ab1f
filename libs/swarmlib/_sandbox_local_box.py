"""The bubblewrap command line of one local sandbox: what a program sees inside it and may do.

What a program gets (each point is proven by ``tests/sandbox/test_hostile.py``):

* its own network, pid, ipc and uts namespaces: no route anywhere, not even to the host's
  loopback, and no host process to see or signal;
* a read-only view of ``/usr`` and of the interpreter's prefix and nothing else of the host (no
  ``/etc``, ``/home``, ``/root`` beyond the interpreter, no service environment: bubblewrap itself
  starts with an empty one);
* ``/box`` (read-only) holding ``main.py`` and the caller's files, and ``/tmp``, a private tmpfs
  bounded to ``tmp_size_mb`` (mounted inside the sandbox, as bubblewrap 0.8 has no ``--size``);
* limits on CPU time, address space, processes, file size and open files, set just before the
  program starts by the launcher (``_sandbox_local_launcher``); no capabilities,
  ``no_new_privs``, and a seccomp filter that refuses new namespaces (in a user namespace of its
  own a program would be root again).

When the service runs as root, a user namespace would map the sandbox's root to the host's root,
and the kernel never applies RLIMIT_NPROC to (host) root, so a fork bomb would go unbounded.
In that case the sandbox skips the user namespace and drops to a dedicated unprivileged uid per
sandbox, which makes the process limit real and per execution. Without root, bubblewrap uses a
user namespace and RLIMIT_NPROC counts all processes of the service's user (a weaker bound).
"""

from __future__ import annotations

import marshal
import os
import site
import sys
from dataclasses import dataclass
from pathlib import Path

from . import _sandbox_local_launcher as launcher
from ._sandbox import SandboxConfig

_OPEN_FILES = 512
# A /dev of the harmless character devices only. Not bubblewrap's --dev: with it, a user
# namespace's tmpfs mount on /tmp is refused (EPERM), and it brings ptys and an unbounded /dev/shm.
_DEV = [
    "--perms",
    "0755",
    "--tmpfs",
    "/dev",
    *(
        arg
        for node in ("null", "zero", "full", "random", "urandom")
        for arg in ("--dev-bind", f"/dev/{node}", f"/dev/{node}")
    ),
    *(
        arg
        for link, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            # POSIX shared memory and semaphores (multiprocessing's locks) live in the bounded /tmp.
            ("shm", "/tmp"),
        )
        for arg in ("--symlink", target, f"/dev/{link}")
    ),
]


def base_python() -> str:
    """The real interpreter behind the venv: the venv's own files are not bound into the box."""
    candidate = getattr(sys, "_base_executable", "") or ""
    if candidate and Path(candidate).is_file() and _inside(candidate, sys.base_prefix):
        return candidate
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(Path(sys.base_prefix) / "bin" / version)


def _inside(path: str, prefix: str) -> bool:
    try:
        Path(path).resolve().relative_to(Path(prefix).resolve())
    except ValueError:
        return False
    return True


def _site_dirs(prefix: str) -> list[str]:
    """The interpreter's site-packages that exist inside the box.

    The program runs with ``-S``, so these are put on ``sys.path`` by the launcher, but the
    ``.pth`` start-up hooks in them are not run: they are the host's, and on a host whose hook
    imports a certificate bundle they alone cost more than the rest of an execution.
    """
    return [
        p for p in site.getsitepackages([prefix]) if Path(p).is_dir() and (_inside(p, prefix) or p.startswith("/usr/"))
    ]


# Compiling the launcher costs more CPU than starting the interpreter does on a slow host, so it is
# compiled once here and handed over marshalled (the sandbox runs this same interpreter version).
_BOOTSTRAP = "import marshal, sys\nexec(marshal.loads(bytes.fromhex(sys.argv.pop(1))))\n"


def _launcher_code() -> str:
    source = Path(launcher.__file__).read_text(encoding="utf-8")
    return marshal.dumps(compile(source, "<swarm-sandbox-launcher>", "exec", dont_inherit=True)).hex()


@dataclass(frozen=True)
class BoxCommand:
    """What every sandbox's command line is built from, found once when the sandbox is opened."""

    config: SandboxConfig
    python: str
    prefix: str
    site_dirs: str
    launcher: str
    drop_privileges: bool

    @classmethod
    def for_host(cls, config: SandboxConfig) -> BoxCommand:
        """This host's interpreter, its site-packages, the compiled launcher, and whether we are root."""
        prefix = sys.base_prefix
        return cls(
            config=config,
            python=base_python(),
            prefix=prefix,
            site_dirs=os.pathsep.join(_site_dirs(prefix)),
            launcher=_launcher_code(),
            drop_privileges=os.geteuid() == 0,
        )

    def argv(self, uid: int, info_fd: int, status_fd: int) -> list[str]:
        """bubblewrap's arguments for a sandbox that runs as ``uid`` (when dropping privileges)."""
        cfg = self.config
        if self.drop_privileges:
            unshare = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
            caps = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            unshare = ["--unshare-all"]
            caps = []
            uid = -1
        mounts = ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / link
            if host.is_symlink():
                mounts += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                mounts += ["--ro-bind", str(host), str(host)]
        if not _inside(self.prefix, "/usr"):
            for parent in reversed(Path(self.prefix).parents):
                if str(parent) != "/":
                    mounts += ["--perms", "0755", "--dir", str(parent)]
            mounts += ["--ro-bind", self.prefix, self.prefix]
        mounts += ["--dir", "/tmp", "--dir", "/box", "--proc", "/proc", *_DEV]
        # Nothing outside /tmp is writable: not the root bubblewrap builds, not its /dev.
        mounts += ["--remount-ro", "/dev", "--remount-ro", "/"]
        launch = [
            str(uid),
            str(cfg.tmp_size_mb),
            str(cfg.memory_mb),
            str(cfg.max_processes),
            str(cfg.output_cap_bytes * 16),
            str(_OPEN_FILES),
            str(status_fd),
            self.site_dirs,
        ]
        return [
            cfg.bwrap_path,
            *unshare,
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "LANG",
            "C.UTF-8",
            *mounts,
            "--chdir",
            "/tmp",
            "--info-fd",
            str(info_fd),
            "--cap-drop",
            "ALL",
            # Kept only by the launcher, which mounts /tmp and /box and then drops every one.
            "--cap-add",
            "CAP_SYS_ADMIN",
            "--cap-add",
            "CAP_SETPCAP",
            *caps,
            "--",
            self.python,
            "-I",
            "-S",
            "-B",
            "-c",
            _BOOTSTRAP,
            self.launcher,
            *launch,
        ]
