"""A model's license travels with everything built from it.

A base model folder may hold license files (Gemma: `NOTICE.txt`, which its terms require every
copy and Model Derivative to carry, and `GEMMA_TERMS.html`) and a model card whose front matter
names the license. hala's outputs that are derived from such a model (the translator, the SFT and
merged models, the FP8 teacher) get the same files, and their cards the same `license:`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

LICENSE_FILES = ("NOTICE.txt", "NOTICE", "GEMMA_TERMS.html", "LICENSE", "LICENSE.txt", "LICENSE.md", "USE_POLICY.md")
_FRONT_MATTER_LICENSE = re.compile(r"\A---\n(?:.*\n)*?license:\s*(\S+)\s*\n(?:.*\n)*?---\n")


def license_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return [folder / name for name in LICENSE_FILES if (folder / name).is_file()]


def copy_license_files(source: str | Path, dest: str | Path) -> list[Path]:
    """Copy `source`'s license files into `dest` (nothing when `source` is not a local folder)."""
    copied = []
    for path in license_files(source) if Path(source).is_dir() else []:
        copied.append(Path(shutil.copy2(path, Path(dest) / path.name)))
    return copied


def card_license(folder: str | Path) -> str | None:
    """The `license:` of the model card in `folder` (README.md front matter), if it names one."""
    card = Path(folder) / "README.md"
    if not card.is_file():
        return None
    match = _FRONT_MATTER_LICENSE.match(card.read_text(encoding="utf-8"))
    return match.group(1) if match else None
