"""`USER`/`-u` resolved against the container's own /etc/passwd and /etc/group (read after pivot_root)."""

from __future__ import annotations


class UserError(Exception):
    pass


def _table(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve(user: str) -> tuple[int, int, list[int], str]:
    """(uid, gid, supplementary gids, home) for `user[:group]`, names or numbers, like Docker."""
    name, _, group = (user or "0").partition(":")
    passwd = _table("/etc/passwd")
    uid = gid = None
    home = "/"
    username = None
    for entry in passwd:
        if len(entry) >= 7 and (entry[0] == name or (name.isdigit() and entry[2] == name)):
            username, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5] or "/"
            break
    if uid is None:
        if not name.isdigit():
            raise UserError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
        home = "/root" if uid == 0 else "/"
    groups_table = _table("/etc/group")
    if group:
        for entry in groups_table:
            if len(entry) >= 3 and (entry[0] == group or (group.isdigit() and entry[2] == group)):
                gid = int(entry[2])
                break
        else:
            if not group.isdigit():
                raise UserError(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    assert gid is not None
    extra = {gid}
    if username and not group:
        for entry in groups_table:
            if len(entry) >= 4 and username in entry[3].split(","):
                extra.add(int(entry[2]))
    return uid, gid, sorted(extra), home
