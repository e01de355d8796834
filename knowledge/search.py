"""Full-text search over tips and known messages (SQLite FTS5 in the store).

The index is rebuilt only when the knowledge base's content changes (a hash in ``meta``), so
start-up stays fast and several processes can share one database.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from bot.store import Store
from knowledge.loader import KnowledgeBase

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    kind: str  # "tip" | "message"
    doc_id: str
    score: float


def _docs(kb: KnowledgeBase) -> list[dict[str, str]]:
    docs = []
    for t in kb.tips:
        names = " ".join(kb.label(p) for p in t.platforms)
        docs.append(
            {
                "doc_id": t.id,
                "kind": "tip",
                "title": t.title,
                "body": " ".join([*t.steps, t.code]),
                "keywords": " ".join([*t.keywords, *t.platforms, names]),
            }
        )
    for m in kb.messages:
        docs.append(
            {
                "doc_id": m.id,
                "kind": "message",
                "title": m.title,
                "body": " ".join([m.explanation, *m.what_to_do]),
                "keywords": " ".join([*m.patterns, m.platform, kb.label(m.platform)]),
            }
        )
    return docs


def ensure_index(store: Store, kb: KnowledgeBase) -> bool:
    """(Re)build the index if the knowledge changed; return True when it was rebuilt."""
    docs = _docs(kb)
    digest = hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()
    if store.get_meta("kb_search_hash") == digest:
        return False
    with store.lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        store.db.execute("DELETE FROM kb_search")
        store.db.conn.executemany(
            "INSERT INTO kb_search (doc_id, kind, title, body, keywords) "
            "VALUES (:doc_id, :kind, :title, :body, :keywords)",
            docs,
        )
        store.db.execute(
            "INSERT INTO meta (key, value) VALUES ('kb_search_hash', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [digest],
        )
    return True


def search(store: Store, query: str, limit: int = 3) -> list[Hit]:
    terms = [t for t in _WORD.findall(query.lower()) if len(t) > 1][:40]
    if not terms:
        return []
    match = " OR ".join('"' + t.replace('"', "") + '"' for t in dict.fromkeys(terms))
    rows = store.db.execute(
        "SELECT kind, doc_id, bm25(kb_search, 4.0, 1.0, 2.0) AS score FROM kb_search "
        "WHERE kb_search MATCH ? ORDER BY score LIMIT ?",
        [match, limit],
    ).fetchall()
    return [Hit(kind, doc_id, score) for kind, doc_id, score in rows]
