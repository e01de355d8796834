"""Lean kernels (``preimports = "lazy"``) on real sandboxed kernels: ``pd`` and ``plt`` work in
the first cell exactly as pre-imported ones do, and a spare completed by the pool's top-up is
in the same state as an eager kernel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.kernels import KernelLimits
from bot.kernels.jupyter import ExecOutcome
from bot.kernels.local import LocalBackend
from bot.kernels.models import ImageOutput, Output, ResultOutput, StreamOutput
from bot.kernels.process import LocalKernel
from tests.kernels.helpers import TEST_LIMITS

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PLOT = "plt.figure(figsize=(2, 2))\nplt.plot([1, 3, 2])\nplt.title('lazy');"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lazy() -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(TEST_LIMITS.model_copy(update={"preimports": "lazy"}))
    await backend.check()
    yield backend
    await backend.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def eager_plot_png() -> bytes:
    """What the same plot gives on an eager kernel (numpy, pandas, matplotlib at start)."""
    limits: KernelLimits = TEST_LIMITS.model_copy(update={"preimports": "eager"})
    backend = LocalBackend(limits)
    try:
        kernel = await backend.start()
        assert not kernel.lean
        outputs = await run(backend, kernel, PLOT)
    finally:
        await backend.aclose()
    return png_of(outputs)


async def run(backend: LocalBackend, kernel: LocalKernel, code: str) -> list[Output]:
    outputs: list[Output] = []
    reply = await backend.execute(kernel, code, lambda output, size: outputs.append(output))
    assert reply.outcome is ExecOutcome.FINISHED and reply.status == "ok", (reply, outputs)
    return outputs


def text_of(outputs: list[Output]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, StreamOutput | ResultOutput))


def png_of(outputs: list[Output]) -> bytes:
    images = [o.png for o in outputs if isinstance(o, ImageOutput)]
    assert len(images) == 1, outputs
    return images[0]


async def test_the_first_cell_of_a_lean_kernel_plots_like_an_eager_one(
    lazy: LocalBackend, eager_plot_png: bytes
) -> None:
    kernel = await lazy.start()
    assert kernel.lean
    before = await run(
        lazy,
        kernel,
        "m = __import__('sys').modules\n"
        "print('pandas' in m, 'matplotlib.pyplot' in m, type(np).__name__)\ndel m",
    )
    assert text_of(before) == "False False module\n"  # only numpy was imported at start
    assert png_of(await run(lazy, kernel, PLOT)) == eager_plot_png
    after = await run(lazy, kernel, "print(type(plt).__name__, plt.__name__)\n%who")
    # the real module took the stand-in's place, and stays out of %who like a pre-import
    assert text_of(after).splitlines() == [
        "module matplotlib.pyplot",
        "Interactive namespace is empty.",
    ]
    await lazy.shutdown(kernel)


async def test_pandas_is_imported_on_first_use(lazy: LocalBackend) -> None:
    kernel = await lazy.start()
    table = await run(lazy, kernel, "pd.DataFrame({'a': [1, 2]})")
    assert text_of(table) == "   a\n0  1\n1  2"
    again = await run(
        lazy, kernel, "import pandas\nprint(pd is pandas, pd.__version__ == pandas.__version__)"
    )
    assert text_of(again) == "True True\n"
    await lazy.shutdown(kernel)


async def test_a_users_own_imports_and_names_win(lazy: LocalBackend) -> None:
    kernel = await lazy.start()
    out = await run(
        lazy, kernel, "pd = 5\nimport matplotlib.pyplot as pyplot\nprint(pd, pyplot.__name__)"
    )
    assert text_of(out) == "5 matplotlib.pyplot\n"
    await lazy.shutdown(kernel)


async def test_a_completed_spare_is_in_the_eager_state(
    lazy: LocalBackend, eager_plot_png: bytes
) -> None:
    kernel = await lazy.start()
    await lazy.top_up(kernel)
    assert not kernel.lean and kernel.alive
    state = await run(
        lazy,
        kernel,
        "m = __import__('sys').modules\nprint('pandas' in m, 'matplotlib.pyplot' in m, "
        "type(pd).__name__, type(plt).__name__)\ndel m\n%who",
    )
    assert text_of(state).splitlines() == [
        "True True module module",
        "Interactive namespace is empty.",
    ]
    assert png_of(await run(lazy, kernel, PLOT)) == eager_plot_png
    await lazy.shutdown(kernel)
