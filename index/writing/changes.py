"""What a write changes: which articles are added, replaced, removed or left alone, and which passages
keep their id and vector. Pure functions over what the previous generation holds and what is given."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from semsearch.errors import ArticleNotFoundError, InvalidArticleError
from semsearch.index.reading.articles import Article, Passage, StoredPassage


@dataclass(frozen=True)
class Plan:
    """Article ids by fate; `articles` is the next generation's article list, in stored order."""

    articles: list[Article]
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @property
    def to_split(self) -> set[str]:
        """Articles whose passages are made anew (their unchanged texts still keep id and vector)."""
        return {*self.added, *self.updated}


def plan_changes(
    stored: Sequence[Article],
    upserts: Sequence[Article],
    deletes: Sequence[str] = (),
    prune: bool = False,
) -> Plan:
    """Compare the stored articles with the ones given.

    An upsert with a stored id and the same content hash is unchanged; with another hash it replaces
    the stored one. `deletes` must all be stored ids; `prune` removes every stored article not upserted.
    """
    seen: set[str] = set()
    for article in upserts:
        if article.id in seen:
            raise InvalidArticleError(f"The article id {article.id!r} appears twice in one write; give each once")
        seen.add(article.id)
    by_id = {a.id: a for a in stored}
    unknown = [i for i in deletes if i not in by_id]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5])
        raise ArticleNotFoundError(f"No article with id {shown} in the index; nothing was deleted")
    clash = seen.intersection(deletes)
    if clash:
        raise InvalidArticleError(f"The article {sorted(clash)[0]!r} is both written and deleted; give one")
    upserted = {a.id: a for a in upserts}
    removed = [a.id for a in stored if a.id in set(deletes) or (prune and a.id not in upserted)]
    gone = set(removed)
    plan = Plan(articles=[], removed=removed)
    hashes = {a.id: a.content_hash() for a in stored}
    for article in stored:
        if article.id in gone:
            continue
        new = upserted.get(article.id)
        if new is None or new.content_hash() == hashes[article.id]:
            plan.articles.append(article)
            if new is not None:
                plan.unchanged.append(article.id)
        else:
            plan.articles.append(new)
            plan.updated.append(article.id)
    for article in upserts:
        if article.id not in by_id:
            plan.articles.append(article)
            plan.added.append(article.id)
    return plan


@dataclass(frozen=True)
class Assignment:
    """Where each passage of the next generation gets its id and vector."""

    passages: list[StoredPassage]  # ascending id order
    reuse_from: dict[int, int]  # passage id -> stored passage id with the same embedded text
    to_embed: list[int]  # passage ids whose text has no stored vector, each text once
    copy_of: dict[int, int]  # passage id -> the passage in `to_embed` with the same text
    next_passage_id: int


def assign_ids(
    plan: Plan,
    stored: Sequence[StoredPassage],
    donors: Mapping[str, int],
    fresh: Mapping[str, Sequence[tuple[Passage, str]]],
    next_passage_id: int,
) -> Assignment:
    """Stable ids: untouched articles keep their passages; a re-split article keeps the id of each
    passage whose embedded text is unchanged; everything else gets a new id, never one used before.

    `stored` are the passages the ids continue from (none for a rebuild); `fresh` maps each re-split
    article to its (passage, embedded-text hash) list; `donors` maps an embedded-text hash to a stored
    passage whose vector can be reused.
    """
    keep = {a.id for a in plan.articles} - plan.to_split
    by_hash = dict(donors)
    old_ids: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    out: list[StoredPassage] = []
    reuse_from: dict[int, int] = {}
    for item in stored:
        if item.passage.article_id in keep:
            out.append(item)
            reuse_from[item.id] = item.id
        else:
            old_ids[item.passage.article_id][item.embed_hash].append(item.id)
    to_embed: list[int] = []
    pending: dict[str, int] = {}
    copy_of: dict[int, int] = {}
    for article in plan.articles:
        if article.id not in plan.to_split:
            continue
        same_text = old_ids.get(article.id, {})
        for passage, digest in fresh[article.id]:
            claimed = same_text.get(digest)
            if claimed:
                pid = claimed.pop(0)
            else:
                pid = next_passage_id
                next_passage_id += 1
            out.append(StoredPassage(pid, passage, digest))
            if digest in by_hash:
                reuse_from[pid] = by_hash[digest]
            elif digest in pending:
                copy_of[pid] = pending[digest]
            else:
                pending[digest] = pid
                to_embed.append(pid)
    out.sort(key=lambda s: s.id)
    return Assignment(out, reuse_from, to_embed, copy_of, next_passage_id)
