"""Archives made in memory for the extraction tests (tar of any compression, with link members)."""
from __future__ import annotations

import io
import tarfile


def tar_bytes(members: dict[str, bytes], mode: str = "w", links: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    """A tar archive (``mode``: "w", "w:gz", ...) of ``members`` (name -> content) plus the ``links`` members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for link in links:
            tf.addfile(link)
    return out.getvalue()
