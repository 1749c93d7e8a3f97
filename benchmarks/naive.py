"""The naive packaging path users run today: download, extractall, make_archive.

Run as ``python -m benchmarks.naive ARCHIVE SCRATCH``: the archive is copied into
SCRATCH first (as a download to /tmp would be), extracted there, and zipped there
(``SCRATCH/package.zip``) with the standard library's defaults (deflate level 6).
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import zipfile
from pathlib import Path


def main(archive: str, scratch: str) -> None:
    work = Path(scratch)
    downloaded = Path(shutil.copy(archive, work / "download"))
    extracted = work / "extracted"
    if zipfile.is_zipfile(downloaded):
        with zipfile.ZipFile(downloaded) as z:
            z.extractall(extracted)
    else:
        with tarfile.open(downloaded) as tar:
            tar.extractall(extracted, filter="data")
    shutil.make_archive(str(work / "package"), "zip", extracted)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
