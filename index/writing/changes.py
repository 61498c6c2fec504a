"""What a write changes: which articles are added, replaced, removed or left alone, and which passages keep
their id. Pure functions over what the current commit holds of the articles named and what is given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from semsearch.errors import ArticleNotFoundError, InvalidArticleError
from semsearch.index.reading.articles import Article, Passage, StoredPassage


@dataclass(frozen=True)
class Plan:
    """Article ids by fate; `articles` are those the write's new segment holds (added and updated, in the order
    given); unchanged articles stay where they are."""

    articles: list[Article]
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @property
    def replaced(self) -> list[str]:
        """Stored articles this write tombstones: those it updates or removes."""
        return [*self.updated, *self.removed]


def plan_changes(
    stored: Mapping[str, str],
    upserts: Sequence[Article],
    deletes: Sequence[str] = (),
    prune: bool = False,
) -> Plan:
    """Compare the stored articles (id -> content hash; every live one when `prune`, else at least those named
    by `upserts` and `deletes`) with the ones given.

    An upsert with a stored id and the same content hash is unchanged; with another hash it replaces the stored
    one. `deletes` must all be stored ids; `prune` removes every stored article not upserted.
    """
    seen: set[str] = set()
    for article in upserts:
        if article.id in seen:
            raise InvalidArticleError(f"The article id {article.id!r} appears twice in one write; give each once")
        seen.add(article.id)
    unknown = [i for i in deletes if i not in stored]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5])
        raise ArticleNotFoundError(f"No article with id {shown} in the index; nothing was deleted")
    clash = seen.intersection(deletes)
    if clash:
        raise InvalidArticleError(f"The article {sorted(clash)[0]!r} is both written and deleted; give one")
    doomed = set(deletes)
    plan = Plan(articles=[], removed=[i for i in stored if i in doomed or (prune and i not in seen)])
    for article in upserts:
        digest = stored.get(article.id)
        if digest is None:
            plan.articles.append(article)
            plan.added.append(article.id)
        elif digest == article.content_hash():
            plan.unchanged.append(article.id)
        else:
            plan.articles.append(article)
            plan.updated.append(article.id)
    return plan


def assign_ids(
    fresh: Sequence[tuple[str, Sequence[tuple[Passage, str]]]],
    old: Mapping[str, Sequence[StoredPassage]],
    next_passage_id: int,
) -> tuple[list[StoredPassage], int]:
    """Stable ids for the passages of the articles written: a replaced article keeps the id of each passage
    whose embedded text is unchanged; every other passage gets a new id, never one used before.

    `fresh` lists each written article with its (passage, embedded-text hash) pairs; `old` maps a replaced
    article to its stored passages. Returns the passages in the order given, and the next unused id.
    """
    out: list[StoredPassage] = []
    for article_id, passages in fresh:
        same_text: dict[str, list[int]] = {}
        for item in old.get(article_id, ()):
            same_text.setdefault(item.embed_hash, []).append(item.id)
        for passage, digest in passages:
            claimed = same_text.get(digest)
            if claimed:
                pid = claimed.pop(0)
            else:
                pid = next_passage_id
                next_passage_id += 1
            out.append(StoredPassage(pid, passage, digest))
    return out, next_passage_id
