"""A progress bar for long runs: tqdm when it is installed, silence otherwise.

tqdm is an optional dependency (``pip install torch-mbd[progress]``; it comes with the
``examples`` and ``all`` extras): the core needs only torch and numpy.
"""

from __future__ import annotations

import warnings

_warned = False


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar over ``total`` steps, or a silent stand-in when disabled or tqdm is missing."""
    global _warned
    if not enabled:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if not _warned:
            warnings.warn("progress=True needs tqdm: pip install 'torch-mbd[progress]'", stacklevel=3)
            _warned = True
        return _Silent()
    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)
