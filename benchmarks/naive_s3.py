"""The naive S3-to-S3 packaging path: ``download_file``, extract, zip, ``upload_file``.

Run as ``python -m benchmarks.naive_s3 ENDPOINT BUCKET SOURCE_KEY DESTINATION_KEY SCRATCH``
(credentials from the usual AWS variables): boto3's managed transfers download the archive
into SCRATCH, the standard library extracts it there and zips it there (deflate level 6,
as :mod:`benchmarks.naive`), and boto3 uploads the ZIP. Needs /tmp for the archive, its
files and the ZIP; tmpwarden needs none.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

import boto3
from botocore.config import Config


def main(endpoint: str, bucket: str, source_key: str, destination_key: str, scratch: str) -> None:
    client = boto3.client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
    )
    work = Path(scratch)
    downloaded = work / "download.tar.gz"
    client.download_file(bucket, source_key, str(downloaded))
    extracted = work / "extracted"
    with tarfile.open(downloaded) as tar:
        tar.extractall(extracted, filter="data")
    archive = shutil.make_archive(str(work / "package"), "zip", extracted)
    client.upload_file(archive, bucket, destination_key)


if __name__ == "__main__":
    main(*sys.argv[1:6])
