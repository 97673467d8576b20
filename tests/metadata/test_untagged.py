"""The admin page's untagged manifests on both databases: which are listed, in what order, their
referrers (a few each, with the total), and a referrer closure in the order it can be deleted."""

from __future__ import annotations

import asyncio

from registry.metadata.db import Database
from registry.metadata.inventory import referrer_closure, referrers_of_each, untagged_page
from registry.metadata.repositories import ensure_repository
from registry.metadata.schema import manifest_references, manifests, tags

OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


async def _seed(db: Database) -> tuple[int, int]:
    """Repository `a`: tagged `t`, untagged `u1` < `u2` (pushed in that order), index `ix` (untagged) listing
    `child`, referrers `s1`..`s3` of `u1`, `ss` of `s1`, `dangling` (its subject absent) and `elsewhere`, whose
    subject `tb` is only in repository `b`. Repository `b` holds `tb`, `u1`, and an index listing a's `u2`."""
    async with db.write() as conn:
        a = await ensure_repository(db, conn, "a")
        b = await ensure_repository(db, conn, "b")
        ids: dict[tuple[int, str], int] = {}
        rows = [(a, "t", OCI, None), (a, "u1", OCI, None), (a, "child", OCI, None), (a, "ix", INDEX, None),
                (a, "s1", OCI, "u1"), (a, "s2", OCI, "u1"), (a, "s3", OCI, "u1"), (a, "ss", OCI, "s1"),
                (a, "dangling", OCI, "absent"), (a, "u2", OCI, None), (b, "tb", OCI, None), (b, "bix", INDEX, None),
                (b, "u1", OCI, None), (a, "elsewhere", OCI, "tb")]
        for n, (repo, name, media_type, subject) in enumerate(rows):
            result = await conn.execute(manifests.insert().values(
                repository_id=repo, digest=digest(name), media_type=media_type, payload=b"{}", size=2,
                subject_digest=digest(subject) if subject else None, created_at=float(n)))
            ids[(repo, name)] = result.inserted_primary_key[0]
        await conn.execute(tags.insert().values(repository_id=a, name="latest", manifest_id=ids[(a, "t")],
                                                updated_at=1.0))
        await conn.execute(manifest_references.insert().values(manifest_id=ids[(a, "ix")], digest=digest("child"),
                                                               kind="manifest"))
        # An index in another repository listing a's `u2` does not hide it in `a`.
        await conn.execute(manifest_references.insert().values(manifest_id=ids[(b, "bix")], digest=digest("u2"),
                                                               kind="manifest"))
    return a, b


def test_untagged_pages_referrers_and_closure(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            a, _ = await _seed(db)
            async with db.read() as conn:
                page = await untagged_page(conn, a, 100, None)
                assert [m.digest for m in page] == [digest(n) for n in ("elsewhere", "u2", "dangling", "ix", "u1")]
                assert page[2].subject == digest("absent") and page[-1].subject is None
                walked, before = [], None
                while chunk := await untagged_page(conn, a, 2, before):
                    walked += [m.digest for m in chunk]
                    before = chunk[-1].id
                assert walked == [m.digest for m in page]

                listed = await referrers_of_each(conn, a, [digest("u1"), digest("u2"), digest("s1")], 2)
                assert [(r.subject, r.digest, r.count) for r in listed] == sorted(
                    [(digest("u1"), digest("s1"), 3), (digest("u1"), digest("s2"), 3),
                     (digest("s1"), digest("ss"), 1)], key=lambda r: (r[0], [digest("s1"), digest("s2"),
                                                                             digest("ss")].index(r[1])))
                closure = await referrer_closure(conn, a, digest("u1"), 10)
                assert closure[0] == digest("ss") and sorted(closure[1:]) == [digest(n) for n in ("s1", "s2", "s3")]
                assert len(await referrer_closure(conn, a, digest("u1"), 2)) > 2  # more than the limit: said so
                assert await referrer_closure(conn, a, digest("t"), 10) == []
        finally:
            await db.close()

    asyncio.run(scenario())
