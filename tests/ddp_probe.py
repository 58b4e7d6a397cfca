"""`hala` as `accelerate launch -m tests.ddp_probe ...` runs it, recording which rank writes what.

Each write of a model folder (`atomic_folder` in hala.train.sft) and of a manifest appends
`RANK WHAT` to the file `$HALA_DDP_WRITES`, so a test can tell that rank 0 alone wrote them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager


def _record(what: str) -> None:
    with open(os.environ["HALA_DDP_WRITES"], "a", encoding="utf-8") as handle:
        handle.write(f"{os.environ.get('RANK', '0')} {what}\n")


def main() -> None:
    import hala.train.sft as sft
    from hala.cli import main as hala_main
    from hala.data.manifest import Manifest

    real_folder, real_write = sft.atomic_folder, Manifest.write

    @contextmanager
    def folder(target, *args, **kwargs):
        _record(f"folder {os.path.basename(target)}")
        with real_folder(target, *args, **kwargs) as tmp:
            yield tmp

    def write(self, folder, *args, **kwargs):
        _record(f"manifest {self.stage}")
        return real_write(self, folder, *args, **kwargs)

    sft.atomic_folder, Manifest.write = folder, write
    hala_main()


if __name__ == "__main__":
    main()
