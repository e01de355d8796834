"""Every command the bot answers, each with its handler by reference.

The core takes this list (``Registry.of(COMMANDS)``); it is the single source for ``/help``,
Telegram's command menu and Discord's slash commands.
"""

from __future__ import annotations

from bot.core.registry import PLATFORM, Command, Option
from handlers import alternatives, help, platforms, report, run, status, subscriptions, tips

COMMANDS: tuple[Command, ...] = (
    Command(
        "start",
        "What this bot does and how to begin",
        help.start,
        hidden=True,
    ),
    Command(
        "help",
        "List the commands, or explain one",
        help.help,
        (Option("command", "A command name, e.g. status"),),
        usage="/help [command]",
    ),
    Command(
        "status",
        "Is a notebook platform down for everyone, or just for you?",
        status.status,
        (
            PLATFORM,
            Option("chart", "A chart of the last 24 h, 7 or 30 days", choices=("24h", "7d", "30d")),
        ),
        usage="/status [platform] [chart [24h|7d|30d]]",
        examples=("/status", "/status colab", "/status colab chart 30d"),
    ),
    Command(
        "report",
        "Tell the bot a platform fails for you (counted with others' reports)",
        report.report,
        (
            Option("platform", "The platform that fails", required=True, autocomplete="platforms"),
            Option("what", "What you see, e.g. the error message", rest=True),
        ),
        usage="/report <platform> [what you see]",
        examples=("/report colab cannot connect to runtime",),
    ),
    Command(
        "subscribe",
        "Alert this chat when a platform goes down or recovers",
        subscriptions.subscribe,
        (Option("platforms", "Platform ids, or all", autocomplete="platforms", rest=True),),
        usage="/subscribe [platforms|all]",
        examples=("/subscribe colab kaggle", "/subscribe all"),
        admin_in_groups=True,
    ),
    Command(
        "unsubscribe",
        "Stop alerts for some platforms, or all",
        subscriptions.unsubscribe,
        (Option("platforms", "Platform ids, or all", autocomplete="platforms", rest=True),),
        usage="/unsubscribe [platforms|all]",
        admin_in_groups=True,
    ),
    Command(
        "subscriptions",
        "Which alerts this chat gets",
        subscriptions.subscriptions,
        usage="/subscriptions",
    ),
    Command(
        "alternatives",
        "Where to run your notebook instead, ranked for your needs",
        alternatives.alternatives,
        (
            PLATFORM,
            Option("needs", "Needs, e.g. gpu no-phone offline", autocomplete="needs", rest=True),
        ),
        usage="/alternatives [platform] [needs…]",
        examples=("/alternatives colab gpu", "/alternatives offline", "/alternatives no-phone"),
        aliases=("alt",),
    ),
    Command(
        "run",
        "Run Python in your own sandboxed kernel; plots come back as images",
        run.run,
        (
            Option(
                "code",
                "Python code (or reply /run to a message with code)",
                required=True,
                rest=True,
            ),
        ),
        usage="/run <code>",
        examples=("/run print(sum(range(10)))", "/run --info"),
        lane="run",
    ),
    Command(
        "reset",
        "A fresh kernel: forget your variables and files",
        run.reset,
        usage="/reset",
    ),
    Command(
        "platforms",
        "What each notebook platform offers for free",
        platforms.platforms,
        (PLATFORM,),
        usage="/platforms [platform]",
    ),
    Command(
        "tips",
        "Search how-tos and explanations of error messages",
        tips.tips,
        (Option("words", "Words or an error message to look up", required=True, rest=True),),
        usage="/tips <words or error text>",
        examples=("/tips mount drive", "/tips restriction in your location"),
    ),
)
