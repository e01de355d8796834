"""The monitor's tables (migrations 100-199). Imported by ``bot.migrations``."""

from __future__ import annotations

import sqlite_utils

from bot.store import migration


def _run(db: sqlite_utils.Database, script: str) -> None:
    for stmt in (s.strip() for s in script.split(";")):
        if stmt:
            db.execute(stmt)


@migration(101, "monitor state")
def _state(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE IF NOT EXISTS monitor_state (
            platform TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            state TEXT NOT NULL,
            evidence TEXT NOT NULL,
            checked_at REAL,
            latency_ms REAL
        );
        CREATE TABLE IF NOT EXISTS monitor_net (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            offline INTEGER NOT NULL,
            since REAL,
            checked_at REAL NOT NULL
        )
        """,
    )


@migration(102, "monitor history")
def _history(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE IF NOT EXISTS monitor_checks (
            platform TEXT NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            latency_ms REAL
        );
        CREATE INDEX IF NOT EXISTS monitor_checks_pa ON monitor_checks (platform, at);
        CREATE TABLE IF NOT EXISTS monitor_buckets (
            platform TEXT NOT NULL,
            size TEXT NOT NULL,
            start INTEGER NOT NULL,
            up INTEGER NOT NULL DEFAULT 0,
            degraded INTEGER NOT NULL DEFAULT 0,
            down INTEGER NOT NULL DEFAULT 0,
            maintenance INTEGER NOT NULL DEFAULT 0,
            unknown INTEGER NOT NULL DEFAULT 0,
            lat_sum REAL NOT NULL DEFAULT 0,
            lat_n INTEGER NOT NULL DEFAULT 0,
            lat_max REAL,
            PRIMARY KEY (platform, size, start)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS monitor_incidents (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            title TEXT NOT NULL,
            url TEXT,
            official INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS monitor_incidents_ps ON monitor_incidents (platform, started_at)
        """,
    )


@migration(103, "monitor reports")
def _reports(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE IF NOT EXISTS monitor_reports (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            user_key TEXT NOT NULL,
            chat_key TEXT NOT NULL,
            at REAL NOT NULL,
            counts INTEGER NOT NULL,
            text TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS monitor_reports_pa ON monitor_reports (platform, at);
        CREATE INDEX IF NOT EXISTS monitor_reports_ua ON monitor_reports (user_key, at)
        """,
    )


@migration(104, "monitor alerts")
def _alerts(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE IF NOT EXISTS monitor_subscriptions (
            adapter TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            platform TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (adapter, chat_id, platform)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS monitor_subscriptions_p ON monitor_subscriptions (platform);
        CREATE TABLE IF NOT EXISTS monitor_alert_state (
            platform TEXT PRIMARY KEY,
            state TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS monitor_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            adapter TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            platform TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            text TEXT NOT NULL,
            evidence TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at REAL,
            error TEXT
        );
        CREATE INDEX IF NOT EXISTS monitor_outbox_q ON monitor_outbox (adapter, state, id)
        """,
    )
