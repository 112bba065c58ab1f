"""The first process inside every bubblewrap sandbox: set the box up, drop all privileges, run the program.

The service compiles this file and hands the code, marshalled, to the sandboxed interpreter
(``python -I -S -B -c <bootstrap> <code> <arguments>``), so it may import only the standard
library. It runs as pid 2 of the sandbox's pid namespace, still holding the few capabilities
bubblewrap was told to keep, and:

1. mounts a size-bounded tmpfs on ``/tmp`` (bubblewrap 0.8 has no ``--size``; mounting it here,
   inside the sandbox's own mount namespace, is the way to bound it without touching the host) and
   an empty tmpfs on ``/box``;
2. waits for the request on stdin: this is the point where a warm worker idles, so everything
   above is paid before a program is known;
3. writes the program and its files into ``/box`` and remounts it read-only;
4. sets the per-execution resource limits (CPU time counted from here, not from start-up),
   drops to the slot's uid (when the service runs as root), empties every capability set, sets
   ``no_new_privs``, checks in ``/proc/self/status`` that all of it took effect, and installs a
   seccomp filter that refuses new namespaces (see ``_seccomp_filter``);
5. runs ``/box/main.py`` as ``__main__`` in this same interpreter, so a warm worker does not pay
   a second interpreter start-up.

Just before the program runs, ``STARTED`` is written on a status pipe that is then closed. A
process that ends without it never ran the program: the service treats that as a broken sandbox,
and a program cannot fake it (by exiting with some code or printing something) to make the
service believe the sandbox is broken. Set-up errors exit with ``SETUP_FAILED`` and a line on
stderr starting with ``SETUP_PREFIX``.

The request on stdin is ``<timeout_s> <count>\\n`` then, per file, ``<name bytes> <data bytes>\\n``
followed by the name and the data; ``main.py`` is one of the files. No JSON: importing ``json``
costs more than the rest of the parsing on a slow host.
"""

from __future__ import annotations

import builtins
import ctypes
import math
import os
import resource
import sys
import types

SETUP_FAILED = 125
SETUP_PREFIX = "swarm-sandbox setup failed: "
STARTED = b"started"

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
# The box only ever holds what the service sent; the cap just keeps a mistake from eating memory.
_BOX_SIZE = "256m"
_MAIN = "main.py"


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


class _SetupError(Exception):
    """A step of the set-up failed; the program must not run."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise _SetupError(f"{what}: {os.strerror(errno)}")


def _mount(libc: ctypes.CDLL, source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    result = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {target}")


def _read_request(stream: bytes) -> tuple[float, dict[str, bytes]]:
    header, _, rest = stream.partition(b"\n")
    timeout_text, count_text = header.split()
    files: dict[str, bytes] = {}
    view = memoryview(rest)
    pos = 0
    for _ in range(int(count_text)):
        end = rest.index(b"\n", pos)
        name_len, data_len = (int(part) for part in rest[pos:end].split())
        pos = end + 1
        name = bytes(view[pos : pos + name_len]).decode("utf-8")
        pos += name_len
        files[name] = bytes(view[pos : pos + data_len])
        pos += data_len
    if pos != len(rest) or _MAIN not in files:
        raise _SetupError("malformed request")
    return float(timeout_text), files


def _write_box(files: dict[str, bytes]) -> None:
    for name, data in files.items():
        # The service checks names too; a sandbox does not trust its caller's checks twice removed.
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise _SetupError(f"bad file name {name!r}")
        fd = os.open(f"/box/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data) if len(data) < 65536 else _write_all(fd, data)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _set_limits(timeout_s: float, memory_mb: int, nproc: int, fsize: int, nofile: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # RLIMIT_CPU counts the whole life of this process; start the program's allowance from now.
    cpu = math.ceil(usage.ru_utime + usage.ru_stime) + math.ceil(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))


def _drop_privileges(libc: ctypes.CDLL, uid: int) -> None:
    """Leave nothing a program could use to get out: no capabilities in any set, no new privileges."""
    cap = 0
    while libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    if ctypes.get_errno() != 22 or cap < 32:  # EINVAL marks the first capability the kernel lacks
        _check(-1, f"dropping capability {cap} from the bounding set")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    if uid >= 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "clearing capabilities")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")
    with open("/proc/self/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(fields[name], 16) != 0:
            raise _SetupError(f"{name} is {fields[name].strip()} after dropping privileges")
    if fields["NoNewPrivs"].strip() != "1" or (uid >= 0 and fields["Uid"].split()[:4] != [str(uid)] * 4):
        raise _SetupError("privileges were not dropped")


# Seccomp: the one thing a program without capabilities can still do to get more is create a user
# namespace, where it is root again and may, for one, mount a tmpfs no limit here accounts for.
# So namespace creation is refused, and with it the mount API, keyrings, BPF, perf and io_uring
# (kernel surface no candidate needs). clone3 answers ENOSYS, which makes the C library fall back
# to clone, whose flags (unlike clone3's) the filter can read. Any other architecture's system
# calls (x32, 32-bit compat) kill the process.
_SECCOMP_ARCH = {
    # machine: (AUDIT_ARCH, clone, clone3, refused system calls)
    "x86_64": (0xC000003E, 56, 435, (272, 308, 165, 166, 155, 248, 249, 250, 298, 321, 323)),
    "aarch64": (0xC00000B7, 220, 435, (97, 268, 40, 39, 41, 217, 218, 219, 241, 280, 282)),
}
# open_tree .. fspick, io_uring_setup .. io_uring_register, mount_setattr: the same on both.
_SECCOMP_COMMON = (428, 429, 430, 431, 432, 433, 425, 426, 427, 442)
_CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_X32_BIT = 0x40000000
_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO, _KILL = 0x7FFF0000, 0x00050000, 0x80000000
_EPERM, _ENOSYS = 1, 38
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _seccomp_filter(machine: str) -> ctypes.Array[_SockFilter]:
    """The classic-BPF program described above; jumps name their targets by label."""
    if machine not in _SECCOMP_ARCH:
        raise _SetupError(f"no system call filter for {machine}; refusing to run programs without one")
    arch, clone, clone3, refused = _SECCOMP_ARCH[machine]
    code: list[tuple[int, str | int, str | int, int]] = [
        (_LD, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 0, "kill", arch),
        (_LD, 0, 0, 0),  # seccomp_data.nr
        (_JGE, "eperm", 0, _X32_BIT),
        *((_JEQ, "eperm", 0, nr) for nr in (*refused, *_SECCOMP_COMMON)),
        (_JEQ, "enosys", 0, clone3),
        (_JEQ, "clone", 0, clone),
        (_RET, 0, 0, _ALLOW),
    ]
    labels = {"clone": len(code)}
    code += [(_LD, 0, 0, 16), (_JSET, "eperm", 0, _CLONE_NAMESPACES), (_RET, 0, 0, _ALLOW)]  # clone flags
    labels |= {"eperm": len(code), "enosys": len(code) + 1, "kill": len(code) + 2}
    code += [(_RET, 0, 0, _ERRNO | _EPERM), (_RET, 0, 0, _ERRNO | _ENOSYS), (_RET, 0, 0, _KILL)]
    program = (_SockFilter * len(code))()
    for index, (op, jt, jf, k) in enumerate(code):
        hop = [labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        program[index] = _SockFilter(op, hop[0], hop[1], k)
    return program


def _install_filter(libc: ctypes.CDLL, program: ctypes.Array[_SockFilter]) -> None:
    fprog = _SockFprog(len(program), program)
    _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "installing seccomp")


def _run(source: bytes) -> None:
    """Run ``source`` as ``python /box/main.py`` would, with this launcher hidden from tracebacks."""
    path = f"/box/{_MAIN}"
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv[:] = [path]
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        # Skip this launcher's own frame: the interpreter would show only the program's.
        tb = exc.__traceback__
        exc = exc.with_traceback(tb.tb_next if tb is not None else None)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        raise SystemExit(1) from None


def main(argv: list[str]) -> None:
    """``argv``: uid (-1: keep it), tmp MB, memory MB, processes, file bytes, open files, status fd, site dirs."""
    try:
        uid, tmp_mb, memory_mb, nproc, fsize, nofile, status = (int(value) for value in argv[:7])
        libc = ctypes.CDLL(None, use_errno=True)
        syscall_filter = _seccomp_filter(os.uname().machine)
        flags = _MS_NOSUID | _MS_NODEV
        _mount(libc, "tmpfs", "/tmp", "tmpfs", flags, f"size={tmp_mb}m,nr_inodes=4096,mode=1777")
        _mount(libc, "tmpfs", "/box", "tmpfs", flags, f"size={_BOX_SIZE},mode=0755")
        request = sys.stdin.buffer.read()
        timeout_s, files = _read_request(request)
        del request
        _write_box(files)
        _mount(libc, "none", "/box", None, _MS_REMOUNT | _MS_RDONLY | flags, None)
        source = files.pop(_MAIN)
        del files
        sys.path.extend(path for path in argv[7].split(os.pathsep) if path)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir("/tmp")
        _set_limits(timeout_s, memory_mb, nproc, fsize, nofile)
        _drop_privileges(libc, uid)
        _install_filter(libc, syscall_filter)
        # Tell the service the program is starting (a crash from here on is the program's own),
        # and leave it no descriptor but stdin, stdout and stderr.
        os.write(status, STARTED)
        os.closerange(3, 1 << 20)
    except (_SetupError, OSError, ValueError) as exc:
        os.write(2, f"{SETUP_PREFIX}{exc}\n".encode())
        os._exit(SETUP_FAILED)
    _run(source)


if __name__ == "__main__":
    main(sys.argv[1:])
