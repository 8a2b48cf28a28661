"""Zip containers (DOCX, XLSX, PPTX, ODT) are checked before any library opens them.

The check reads only the central directory: the sizes it declares are the most a member can
inflate to, because zipfile stops reading a member at its declared size (a member that claims
less than it holds fails its CRC instead of filling memory).
"""

from __future__ import annotations

import io
import zipfile

from rlm_local.documents.base import ConvertOptions, DocumentError


def open_checked(data: bytes, what: str, options: ConvertOptions) -> zipfile.ZipFile:
    """The container, once its member count and unpacked size are within bounds."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise DocumentError(f"it is a damaged or truncated {what} file") from None
    infos = archive.infolist()
    if len(infos) > options.max_members:
        archive.close()
        raise DocumentError(
            f"it holds {len(infos):,} files inside, over the bound of {options.max_members:,} "
            f"for one {what}; not read"
        )
    total = sum(info.file_size for info in infos)
    if total > options.max_unzipped_bytes:
        archive.close()
        raise DocumentError(
            f"it would unpack to {total / (1 << 20):,.0f} MiB, over the bound of "
            f"{options.max_unzipped_bytes >> 20} MiB for one {what} (a zip bomb?); not read"
        )
    return archive


def check_zip(data: bytes, what: str, options: ConvertOptions) -> None:
    open_checked(data, what, options).close()
