"""The syscall policy of every sandboxed kernel: one readable list, compiled by ``seccomp.py``.

The filter allows everything not listed here (notebook code uses a wide and unpredictable
set of calls) and denies what a notebook never needs but an attacker would use to reach
host-wide kernel pools, other processes, or memory no per-process limit counts.

Rules a reviewer should keep in mind:

- Never filter sockets: ipykernel needs loopback TCP and netlink inside its own network
  namespace; the namespace, not seccomp, isolates the network.
- ``EPERM`` means "you may not"; ``ENOSYS`` means "this call does not exist here" (used where
  libraries fall back to an older call, e.g. glibc falls back from ``clone3`` to ``clone``).
- Foreign ABIs are refused as a whole: 32-bit ``int 0x80`` syscalls (i386 ABI) and x32 syscalls
  get ``ENOSYS`` (libseccomp's "bad architecture" action), so no rule can be bypassed through
  another syscall table.
- ``WITHOUT_MEMORY_CGROUP`` is added only when the sandbox has no cgroup v2 memory limit: a
  cgroup charges memfd, SysV and tmpfs pages to the sandbox, rlimits count none of them.
"""

from __future__ import annotations

import errno

# (syscall, errno, why). Names as libseccomp spells them.
Rule = tuple[str, int, str]

ALWAYS: tuple[Rule, ...] = (
    # Host-wide asynchronous I/O pools: one io_setup takes thousands of the host's
    # /proc/sys/fs/aio-max-nr contexts; io_uring has had a long run of privilege bugs.
    ("io_setup", errno.EPERM, "AIO contexts come from a host-wide pool (fs.aio-max-nr)"),
    ("io_destroy", errno.EPERM, "AIO"),
    ("io_submit", errno.EPERM, "AIO"),
    ("io_cancel", errno.EPERM, "AIO"),
    ("io_getevents", errno.EPERM, "AIO"),
    ("io_pgetevents", errno.EPERM, "AIO"),
    ("io_uring_setup", errno.EPERM, "io_uring: kernel attack surface, host-wide limits"),
    ("io_uring_enter", errno.EPERM, "io_uring"),
    ("io_uring_register", errno.EPERM, "io_uring"),
    # Kernel keyrings are per-uid quotas on the host, not per sandbox.
    ("add_key", errno.EPERM, "kernel keyring: host-wide per-uid quota"),
    ("request_key", errno.EPERM, "kernel keyring"),
    ("keyctl", errno.EPERM, "kernel keyring"),
    # Looking into or steering other processes.
    ("ptrace", errno.EPERM, "tracing other processes"),
    ("process_vm_readv", errno.EPERM, "reading another process's memory"),
    ("process_vm_writev", errno.EPERM, "writing another process's memory"),
    ("kcmp", errno.EPERM, "comparing other processes' kernel objects"),
    ("pidfd_getfd", errno.EPERM, "stealing another process's file descriptors"),
    # Kernel instrumentation and programmability.
    ("perf_event_open", errno.EPERM, "performance counters: side channels, kernel bugs"),
    ("bpf", errno.EPERM, "eBPF programs"),
    ("userfaultfd", errno.EPERM, "userfaultfd: a classic exploit primitive"),
    ("lookup_dcookie", errno.EPERM, "kernel profiling"),
    ("fanotify_init", errno.EPERM, "filesystem-wide event monitoring"),
    ("open_by_handle_at", errno.EPERM, "opening files by handle escapes bind mounts"),
    ("name_to_handle_at", errno.EPERM, "file handles"),
    # Mounts and namespaces: the sandbox's layout is fixed once bubblewrap has built it.
    ("mount", errno.EPERM, "mounts"),
    ("umount2", errno.EPERM, "mounts"),
    ("pivot_root", errno.EPERM, "mounts"),
    ("chroot", errno.EPERM, "mounts"),
    ("fsopen", errno.EPERM, "new mount API"),
    ("fsconfig", errno.EPERM, "new mount API"),
    ("fsmount", errno.EPERM, "new mount API"),
    ("fspick", errno.EPERM, "new mount API"),
    ("move_mount", errno.EPERM, "new mount API"),
    ("open_tree", errno.EPERM, "new mount API"),
    ("mount_setattr", errno.EPERM, "new mount API"),
    ("open_tree_attr", errno.EPERM, "new mount API (Linux 6.15)"),
    ("statmount", errno.EPERM, "mount table details (Linux 6.8)"),
    ("listmount", errno.EPERM, "mount table details (Linux 6.8)"),
    ("unshare", errno.EPERM, "new namespaces"),
    ("setns", errno.EPERM, "joining namespaces"),
    # Kernel modules, reboot, clocks, swap, accounting, privileged I/O.
    ("init_module", errno.EPERM, "kernel modules"),
    ("finit_module", errno.EPERM, "kernel modules"),
    ("delete_module", errno.EPERM, "kernel modules"),
    ("kexec_load", errno.EPERM, "replacing the kernel"),
    ("kexec_file_load", errno.EPERM, "replacing the kernel"),
    ("reboot", errno.EPERM, "reboot"),
    ("swapon", errno.EPERM, "swap"),
    ("swapoff", errno.EPERM, "swap"),
    ("acct", errno.EPERM, "process accounting"),
    ("quotactl", errno.EPERM, "disk quotas"),
    ("syslog", errno.EPERM, "the kernel log"),
    ("settimeofday", errno.EPERM, "the host clock"),
    ("clock_settime", errno.EPERM, "the host clock"),
    ("clock_adjtime", errno.EPERM, "the host clock"),
    ("iopl", errno.EPERM, "port I/O"),
    ("ioperm", errno.EPERM, "port I/O"),
    ("vhangup", errno.EPERM, "terminals"),
    # clone3 passes its flags in memory, which seccomp cannot read: refuse it as "absent" so
    # glibc falls back to clone(2), whose namespace flags are checked below.
    ("clone3", errno.ENOSYS, "flags unreadable by seccomp; glibc falls back to clone"),
)

# clone(2) with any of these flags (new namespaces) is refused; threads and fork are not.
CLONE_NAMESPACE_FLAGS: tuple[tuple[str, int], ...] = (
    ("CLONE_NEWTIME", 0x00000080),
    ("CLONE_NEWNS", 0x00020000),
    ("CLONE_NEWCGROUP", 0x02000000),
    ("CLONE_NEWUTS", 0x04000000),
    ("CLONE_NEWIPC", 0x08000000),
    ("CLONE_NEWUSER", 0x10000000),
    ("CLONE_NEWPID", 0x20000000),
    ("CLONE_NEWNET", 0x40000000),
)

# Memory that RLIMIT_AS does not count once unmapped (memfd, SysV segments kept after
# detaching) or counts nowhere per sandbox (SysV message queues and semaphores live in kernel
# memory). A cgroup charges all of it to the sandbox, so these are denied only without one.
WITHOUT_MEMORY_CGROUP: tuple[Rule, ...] = (
    ("memfd_create", errno.EPERM, "anonymous files no rlimit counts"),
    ("memfd_secret", errno.EPERM, "secret memory no rlimit counts"),
    ("shmget", errno.EPERM, "SysV shared memory outlives its mappings"),
    ("shmat", errno.EPERM, "SysV shared memory"),
    ("shmctl", errno.EPERM, "SysV shared memory"),
    ("msgget", errno.EPERM, "SysV message queues hold kernel memory"),
    ("msgsnd", errno.EPERM, "SysV message queues"),
    ("semget", errno.EPERM, "SysV semaphores hold kernel memory"),
)

# x86_64 numbers of calls newer than some libseccomp releases know (2.5.4 predates them).
X86_64_NUMBERS: dict[str, int] = {
    "memfd_secret": 447,
    "statmount": 457,
    "listmount": 458,
    "open_tree_attr": 467,
}
