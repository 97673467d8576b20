"""The caller of a request, once its credentials are checked."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    name: str  # "" for anonymous
    kind: str  # "anonymous" | "user" | "robot" | "token"
    groups: tuple[str, ...] = ()
    # A robot is limited to these repository patterns and actions, whatever the policy says.
    robot_repositories: tuple[str, ...] = ()
    robot_actions: tuple[str, ...] = ()
    # A bearer token carries its grants: {repository name: actions}.
    granted: dict[str, frozenset[str]] = field(default_factory=dict)
    address: str = ""
    expires_at: float | None = None  # wall-clock end of a robot's or token's validity

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


def anonymous(address: str) -> Identity:
    return Identity(name="", kind="anonymous", address=address)
