"""Plain records for the runtime's data (state files, image records, cgroup settings).

Not dataclasses: importing dataclasses (and inspect, ast and dis with it) and building the runtime's seven
records cost about 12 ms of every container start, measured. Each record writes its own `__init__`."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Equal when the attributes are; shown with them."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]  # mutable, as dataclasses with eq

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def as_json(value: Any) -> Any:
    """Records (nested too) as plain dicts, in attribute order, ready for json.dumps."""
    if isinstance(value, Record):
        return {key: as_json(item) for key, item in vars(value).items()}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value
