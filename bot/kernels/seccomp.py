"""Compiles ``seccomp_policy`` into the BPF program bubblewrap loads (``bwrap --seccomp FD``).

The program is built once per backend with libseccomp (through ``pyseccomp``, ctypes over the
system's ``libseccomp.so.2``) and handed to each sandbox through a file descriptor. bubblewrap
applies it to the sandboxed command right before ``exec``; its own set-up is not filtered.
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import struct
import tempfile
from dataclasses import dataclass

from bot.kernels import seccomp_policy as policy

log = logging.getLogger(__name__)

SECCOMP_HINT = (
    "install libseccomp2 (`apt-get install libseccomp2`) and pyseccomp (the kernels extra)"
)
X32_SYSCALL_BIT = 0x40000000


class SeccompUnavailable(RuntimeError):
    """libseccomp or its Python binding is missing, or the policy cannot be compiled."""


@dataclass(frozen=True, slots=True)
class SeccompProgram:
    """A compiled filter: raw ``struct sock_filter`` array, and what it denies."""

    bpf: bytes
    denied: tuple[str, ...]  # syscall names denied on the native ABI
    skipped: tuple[str, ...]  # names this libseccomp and kernel table do not know
    memory_rules: bool  # whether memfd/SysV IPC are denied (no memory cgroup)

    @property
    def instructions(self) -> list[tuple[int, int, int, int]]:
        """(code, jt, jf, k) of each BPF instruction."""
        return list(struct.iter_unpack("=HBBI", self.bpf))

    def rejects_x32(self) -> bool:
        """Whether the program compares the syscall number against the x32 bit."""
        jge_k = 0x35  # BPF_JMP | BPF_JGE | BPF_K
        return any(code == jge_k and k == X32_SYSCALL_BIT for code, _, _, k in self.instructions)


def compile_policy(*, memory_cgroup: bool) -> SeccompProgram:
    """The filter for this machine's native ABI; raises SeccompUnavailable with the fix."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError) as exc:  # RuntimeError: "Unable to find libseccomp"
        raise SeccompUnavailable(f"{exc}; {SECCOMP_HINT}") from exc

    rules = list(policy.ALWAYS)
    if not memory_cgroup:
        rules += policy.WITHOUT_MEMORY_CGROUP
    native = sc.system_arch()
    is_x86_64 = native == sc.Arch.X86_64
    filt = sc.SyscallFilter(sc.ALLOW)
    # Another ABI's syscall table (i386 `int 0x80`, x32) would bypass every rule: refuse it.
    filt.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(errno.ENOSYS))
    denied: list[str] = []
    skipped: list[str] = []
    for name, err, _why in rules:
        number: int | str = name
        if sc.resolve_syscall(native, name) < 0:
            known = policy.X86_64_NUMBERS.get(name)
            if not is_x86_64 or known is None:
                skipped.append(name)
                continue
            number = known
        try:
            filt.add_rule(sc.ERRNO(err), number)
        except OSError as exc:
            raise SeccompUnavailable(f"libseccomp refused a rule for {name}: {exc}") from exc
        denied.append(name)
    for _flag, bit in policy.CLONE_NAMESPACE_FLAGS:
        filt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    with tempfile.TemporaryFile() as out:
        filt.export_bpf(out)
        out.seek(0)
        bpf = out.read()
    if skipped:
        log.info("seccomp: this libseccomp does not know %s; left out", ", ".join(skipped))
    return SeccompProgram(
        bpf=bpf, denied=tuple(denied), skipped=tuple(skipped), memory_rules=not memory_cgroup
    )


def policy_text(*, memory_cgroup: bool) -> str:
    """The policy as a reviewer reads it (for docs and logs)."""
    rules = list(policy.ALWAYS)
    if not memory_cgroup:
        rules += policy.WITHOUT_MEMORY_CGROUP
    lines = [f"{name}: {os.strerror(err)} ({why})" for name, err, why in rules]
    flags = ", ".join(flag for flag, _ in policy.CLONE_NAMESPACE_FLAGS)
    lines.append(f"clone with {flags}: {os.strerror(errno.EPERM)}")
    lines.append(f"any syscall of a foreign ABI ({platform.machine()} only): ENOSYS")
    return "\n".join(lines)
