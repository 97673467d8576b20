"""The mark phase: from a snapshot of the metadata graph, what may go.

Pure computation, no I/O: a dry run is exactly this plan, and a real run sweeps it with
locked re-checks (see registry/metadata/gc.py), so anything that changed since the snapshot is
kept rather than lost.

Roots are tagged manifests (after retention) and untagged manifests the untagged policy keeps.
Everything a root needs survives: index children, and referrers (signatures, SBOMs) of a
surviving manifest. A repository link survives while a surviving manifest of that repository
references the blob or while its grace period runs (a layer whose manifest is not pushed yet): the
period starts when the blob is linked and restarts when a client HEADs, GETs or mounts it (see
LocalContent.blob_head), so a layer a client was just told exists stays for its manifest. A blob
survives while any link, any surviving manifest or a mirror fill needs it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from registry.gc.policy import DAY, RetentionPolicy
from registry.metadata.gc import ManifestNode, Snapshot, TagRow


@dataclass
class Plan:
    tags: list[TagRow] = field(default_factory=list)
    manifests: list[ManifestNode] = field(default_factory=list)
    links: list[tuple[int, str]] = field(default_factory=list)
    blobs: dict[str, int] = field(default_factory=dict)

    @property
    def freed_bytes(self) -> int:
        return sum(self.blobs.values())


def retention_victims(snapshot: Snapshot, policies: list[RetentionPolicy], now: float) -> list[TagRow]:
    """Tags the first matching policy of their repository deletes."""
    if not policies:
        return []
    by_repository: dict[int, list[TagRow]] = defaultdict(list)
    for tag in snapshot.tags:
        by_repository[tag.repository_id].append(tag)
    victims = []
    for repository_id, repo_tags in by_repository.items():
        name = snapshot.repositories.get(repository_id, "")
        policy = next((p for p in policies if p.matches(name)), None)
        if policy is None:
            continue
        newest_first = sorted(repo_tags, key=lambda t: (t.updated_at, t.name), reverse=True)
        for position, tag in enumerate(newest_first):
            if _retained(policy, tag, position, snapshot.manifests.get(tag.manifest_id), now):
                continue
            victims.append(tag)
    return victims


def _retained(policy: RetentionPolicy, tag: TagRow, position: int, manifest: ManifestNode | None,
              now: float) -> bool:
    if policy.keep_last is not None and position < policy.keep_last:
        return True
    if policy.older_than_days is not None and tag.updated_at >= now - policy.older_than_days * DAY:
        return True
    if policy.keeps_by_name(tag.name):
        return True
    if policy.keep_pulled_within_days is not None and manifest is not None and manifest.last_pulled_at is not None:
        return manifest.last_pulled_at >= now - policy.keep_pulled_within_days * DAY
    return False


def mark(snapshot: Snapshot, *, now: float, grace_seconds: float, untagged_days: float | None,
         policies: list[RetentionPolicy], collect: bool = True) -> Plan:
    """The whole plan. `untagged_days` None keeps untagged manifests; `collect` False plans
    retention only (tags, and the manifests only they kept), never links or blobs."""
    plan = Plan(tags=retention_victims(snapshot, policies, now))
    removed = {(t.repository_id, t.name) for t in plan.tags}
    tagged_before = {t.manifest_id for t in snapshot.tags}
    tagged_after = {t.manifest_id for t in snapshot.tags if (t.repository_id, t.name) not in removed}
    untagged_cutoff = None if untagged_days is None or not collect else now - untagged_days * DAY

    roots = []
    for node in snapshot.manifests.values():
        if node.id in tagged_after:
            roots.append(node)
        elif node.id in tagged_before:
            continue  # retention took its last tag
        elif untagged_cutoff is None or node.created_at >= untagged_cutoff:
            roots.append(node)
    surviving = _reachable(snapshot, roots)
    plan.manifests = _sweep_order([n for n in snapshot.manifests.values() if n.id not in surviving])
    if not collect:
        return plan

    needed_links = {(n.repository_id, digest) for n in snapshot.manifests.values() if n.id in surviving
                    for digest in n.blobs}
    link_cutoff = now - grace_seconds
    plan.links = sorted(key for key, linked_at in snapshot.links.items()
                        if linked_at < link_cutoff and key not in needed_links)
    dropped_links = set(plan.links)
    needed_blobs = {digest for _, digest in needed_links} | snapshot.filling
    needed_blobs.update(digest for (_, digest) in snapshot.links.keys() - dropped_links)
    plan.blobs = {digest: size for digest, size in sorted(snapshot.blobs.items()) if digest not in needed_blobs}
    return plan


def _sweep_order(doomed: list[ManifestNode]) -> list[ManifestNode]:
    """An order in which the sweep's re-checks let every doomed manifest go, whatever the batch
    boundaries: an index before its children (a child stays while its index does), a subject
    before its referrers (a referrer stays while its subject does)."""
    by_key = {(n.repository_id, n.digest): n for n in doomed}
    after: dict[int, list[ManifestNode]] = defaultdict(list)
    waiting = {n.id: 0 for n in doomed}
    for node in doomed:
        for child in (by_key.get((node.repository_id, digest)) for digest in node.children):
            if child is not None:
                after[node.id].append(child)
                waiting[child.id] += 1
        subject = by_key.get((node.repository_id, node.subject)) if node.subject else None
        if subject is not None:
            after[subject.id].append(node)
            waiting[node.id] += 1
    ready = sorted((n for n in doomed if waiting[n.id] == 0), key=lambda n: (n.repository_id, n.digest), reverse=True)
    ordered = []
    while ready:
        node = ready.pop()
        ordered.append(node)
        for following in after[node.id]:
            waiting[following.id] -= 1
            if waiting[following.id] == 0:
                ready.append(following)
    return ordered


def _reachable(snapshot: Snapshot, roots: list[ManifestNode]) -> set[int]:
    by_digest: dict[tuple[int, str], ManifestNode] = {}
    referrers: dict[tuple[int, str], list[ManifestNode]] = defaultdict(list)
    for node in snapshot.manifests.values():
        by_digest[(node.repository_id, node.digest)] = node
        if node.subject:
            referrers[(node.repository_id, node.subject)].append(node)
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        for child in node.children:
            found = by_digest.get((node.repository_id, child))
            if found is not None:
                pending.append(found)
        pending.extend(referrers.get((node.repository_id, node.digest), ()))
    return seen
