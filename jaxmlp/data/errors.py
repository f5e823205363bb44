"""The errors of jaxmlp.data: problems with the data that the user can fix, and what was tried.

Every other module of the package raises these, so they live below all of them.
"""

from __future__ import annotations

from collections.abc import Sequence


class DataError(Exception):
    """A problem with the data that the user can fix; the message says what and how.

    Command-line tools print `str(error)` without a traceback, so the message must stand alone.
    """


class DatasetNotFound(DataError):
    """No place had the data set; `tried` lists every place looked, in order, with the reason."""

    def __init__(self, message: str, tried: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tried: list[str] = list(tried)
