"""``python -m bot.web``: the status page, API and metrics (plus chat adapters with tokens)."""

from bot.web.serve import main

raise SystemExit(main())
