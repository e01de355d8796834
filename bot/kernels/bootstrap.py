"""How a kernel is started inside the sandbox: its rlimits and its bootstrap config.

The code itself is ``kernel_boot.py``, passed as source to ``python -c`` because the project
directory is not in the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.kernels.models import KernelLimits


def rlimits(limits: KernelLimits, *, address_space: bool = True) -> dict[str, int]:
    """rlimits the kernel sets on itself before any user code runs.

    RLIMIT_AS is the per-process memory fence whenever the sandbox has no cgroup, GPU or not.
    CUDA reserves tens of GB of address space, so a kernel that is offered a GPU gets
    RLIMIT_DATA instead (``address_space=False``) — which the backend does only when a cgroup
    limits the sandbox's memory (or the operator opted in), because shared mappings
    (``mmap(-1, n)``) escape RLIMIT_DATA.
    """
    memory = limits.memory_mb * 1024 * 1024
    values = {
        ("RLIMIT_AS" if address_space else "RLIMIT_DATA"): memory,
        "RLIMIT_NPROC": limits.max_processes,
        "RLIMIT_NOFILE": limits.max_open_files,
        "RLIMIT_FSIZE": limits.tmp_mb * 1024 * 1024,
        "RLIMIT_CORE": 0,
        "RLIMIT_CPU": limits.cpu_lifetime_s,
    }
    return values


# The kernel's entry point, run as `python -c BOOTSTRAP CONFIG_JSON` (see kernel_boot.py).
BOOTSTRAP = (Path(__file__).parent / "kernel_boot.py").read_text()

PREIMPORTS = (
    "import numpy as np",
    "import pandas as pd",
    "import matplotlib.pyplot as plt",
)
# ``preimports = "lazy"``: numpy at start (~0.04 s of CPU), pandas (~0.15 s) and pyplot with its
# inline backend (~0.3 s) bound to stand-ins that import them on first use, or when the warm
# pool completes an idle spare with TOP_UP (bench/bench_kernel_start.py measures each part).
EAGER_IMPORTS = ("import numpy as np",)
LAZY_IMPORTS = {"pd": "pandas", "plt": "matplotlib.pyplot"}
# Run once on a lean spare while the machine is idle: the same state as an eager kernel. The
# stand-ins import their modules on first attribute access (and stay hidden from %who); inside
# the ``if`` nothing is displayed.
TOP_UP = "if True:\n    pd.DataFrame, plt.figure\n    get_ipython().enable_matplotlib('inline')\n"


def bootstrap_config(
    limits: KernelLimits,
    *,
    connection_file: str,
    cwd: str,
    preimport: bool = True,
    address_space: bool = True,
) -> str:
    lazy = preimport and limits.preimports == "lazy"
    if not preimport:
        exec_lines: list[str] = []
    else:
        exec_lines = list(EAGER_IMPORTS if lazy else PREIMPORTS)
    return json.dumps(
        {
            "rlimits": rlimits(limits, address_space=address_space),
            "connection_file": connection_file,
            "cwd": cwd,
            "dirs": [f"{cwd}/.tmp", f"{cwd}/.config/matplotlib"],
            "exec_lines": exec_lines,
            "lazy": LAZY_IMPORTS if lazy else {},
            "max_text_chars": limits.output_bytes + 1,
            "max_image_chars": limits.max_image_bytes * 4 // 3 + 4,
            "matplotlib": "inline" if preimport and not lazy else None,
        }
    )
