"""Whether an uploaded body is hashed for its SigV4 signature: only where that guards it.

botocore signs a request body with the SHA-256 of its bytes unless the client's
``s3.payload_signing_enabled`` is False (SigV4's ``UNSIGNED-PAYLOAD``). Over HTTPS with a
checksum it computes itself, botocore already sends ``UNSIGNED-PAYLOAD``; but tmpwarden
sends each part's CRC-32 itself (:mod:`handler.locations.multipart`), and for a checksum
the caller sends botocore hashes every byte, about 1 CPU-s per GiB uploaded on the 2-core
test bed of ``benchmarks/network_goals.py``. :func:`set_payload_signing` turns the hash off
where TLS or loopback guards the bytes, and keeps it everywhere else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from botocore.utils import get_environ_proxies

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client
else:
    S3Client = object

__all__ = ["payload_signing_needed", "set_payload_signing"]


def set_payload_signing(client: S3Client) -> None:
    """Set ``client``'s ``payload_signing_enabled`` from :func:`payload_signing_needed`,
    before any request: decided on the endpoint botocore resolved (it also reads
    ``AWS_ENDPOINT_URL_S3`` and the config file's ``endpoint_url``) and on its proxies
    (the client's, else the environment's, as botocore picks them). botocore reads this
    dict of the client's config at each signature (``botocore.auth.S3SigV4Auth``)."""
    made: Any = client.meta.config  # its options, which botocore-stubs declare only as arguments
    options: _S3Dict | None = made.s3
    if options is None:
        return
    url = client.meta.endpoint_url
    proxies: Mapping[str, str] | None = made.proxies
    options["payload_signing_enabled"] = payload_signing_needed(
        url, get_environ_proxies(url) if proxies is None else proxies
    )


def payload_signing_needed(endpoint_url: str, proxies: Mapping[str, str]) -> bool:
    """Whether a request body sent to ``endpoint_url`` (the URL the client resolved;
    ``proxies``: scheme -> proxy URL it goes through) must be hashed with SHA-256 for its
    signature; False: SigV4's ``UNSIGNED-PAYLOAD`` (botocore's ``payload_signing_enabled``).

    False wherever nothing on the way can change the body unseen: over HTTPS (through a
    proxy too: botocore tunnels TLS through it), and to a loopback endpoint (127.0.0.0/8,
    ``::1``, its IPv4-mapped form, ``localhost``) reached without a proxy. It is TLS or
    loopback that guards the bytes: the part's CRC-32 in a signed header, which S3
    verifies, catches corruption but not a change made on purpose (a CRC-32 is forged in
    microseconds); "TLS and a checksum is sufficiently secure" is botocore's own rule
    (``botocore.auth.S3SigV4Auth``). Plain HTTP to any other host, or through an HTTP
    proxy, keeps the signed payload."""
    scheme = urlsplit(endpoint_url).scheme.lower()
    if scheme == "https":
        return False
    return bool(proxies.get(scheme)) or not _loopback(endpoint_url)


def _loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name other than localhost
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback
