"""Django storages on S3: S3Storage, StaticS3Storage and ManifestStaticS3Storage.

Thin shims: settings, names and Django semantics. Every byte of I/O goes through
the C extension, django_s3_storage._s3. The settings, keyword arguments and
behaviour follow django-s3-storage 0.15, so an existing project switches without
changing anything.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import ipaddress
import itertools
import json
import logging
import mimetypes
import os
import posixpath
import re
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from datetime import timezone as dt_timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode, urljoin

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.contrib.staticfiles.utils import matches_patterns
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.core.signals import setting_changed
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from django.utils.encoding import filepath_to_uri
from django.utils.http import http_date

from django_s3_storage import _s3
from django_s3_storage.files import READ_MODES, WRITE_MODES, S3File, S3WriteFile

__all__ = [
    "S3Error",
    "S3File",
    "S3WriteFile",
    "S3Storage",
    "StaticS3Storage",
    "ManifestStaticS3Storage",
]

#: Raised for every failed S3 request; S3NotFoundError (also a FileNotFoundError)
#: for a missing key. Both are OSError, as Django expects of a storage.
S3Error = _s3.S3Error

UNCOMPRESSED_SIZE_META_KEY = "uncompressed_size"
# save() reads its content in chunks of this size
_CHUNK = 1024 * 1024
_KEY_MAX = 1024  # bytes of UTF-8 in an S3 key
# S3's bounds on a part of a multipart upload (the last one may be smaller)
_PART_MIN = 5 * 1024 * 1024
_PART_MAX = 5 * 1024 * 1024 * 1024
# Ceph RGW hands metadata names back with '-' for '_'.
_UNCOMPRESSED_SIZE_KEYS = (UNCOMPRESSED_SIZE_META_KEY, "uncompressed-size")
_GZIP_SUBTYPES = frozenset(("xml", "json", "html", "javascript"))
# AWS_S3_OBJECT_PARAMETERS and get_object_parameters(): boto3's names (as
# django-storages takes them) -> the C client's keyword, or "header:" the header
_OBJECT_PARAMETERS = {
    "ACL": "acl",
    "CacheControl": "cache_control",
    "ContentDisposition": "content_disposition",
    "ContentLanguage": "content_language",
    "ContentType": "content_type",
    "StorageClass": "storage_class",
    "ServerSideEncryption": "server_side_encryption",
    "SSEKMSKeyId": "sse_kms_key_id",
    "Metadata": "metadata",
    "Expires": "header:Expires",
    "Tagging": "header:x-amz-tagging",
    "WebsiteRedirectLocation": "header:x-amz-website-redirect-location",
    "ObjectLockMode": "header:x-amz-object-lock-mode",
    "ObjectLockRetainUntilDate": "header:x-amz-object-lock-retain-until-date",
    "ObjectLockLegalHoldStatus": "header:x-amz-object-lock-legal-hold",
    "GrantRead": "header:x-amz-grant-read",
    "GrantReadACP": "header:x-amz-grant-read-acp",
    "GrantWriteACP": "header:x-amz-grant-write-acp",
    "GrantFullControl": "header:x-amz-grant-full-control",
    "SSEKMSEncryptionContext": "header:x-amz-server-side-encryption-context",
    "BucketKeyEnabled": "header:x-amz-server-side-encryption-bucket-key-enabled",
}
_OBJECT_PARAMETERS_REFUSED = {
    "ContentEncoding": "the storage sets it (AWS_S3_GZIP)",
    "SSECustomerAlgorithm": "SSE-C needs the key on every read, which this storage does not send",
    "SSECustomerKey": "SSE-C is not supported",
    "SSECustomerKeyMD5": "SSE-C is not supported",
    "ChecksumAlgorithm": "every upload carries Content-MD5 already",
    "RequestPayer": "it would have to go on every request (parts, reads, listings), "
    "not only on uploads",
    "ExpectedBucketOwner": "it would have to go on every request (parts, reads, listings), "
    "not only on uploads",
}


def _object_parameters(params: Any, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """boto3-style object parameters -> (the C client's keywords, more headers); a
    ValueError names `where` and the parameter."""
    if not isinstance(params, dict):
        raise ValueError(
            f"{where} must be a dict of boto3's object parameters, not {type(params).__name__}"
        )
    kw: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for key, value in params.items():
        target = _OBJECT_PARAMETERS.get(key)
        if target is None:
            why = _OBJECT_PARAMETERS_REFUSED.get(
                key,
                "it is not one of boto3's object "
                "parameters that this storage sends: " + ", ".join(sorted(_OBJECT_PARAMETERS)),
            )
            raise ValueError(f"{where}[{key!r}] is not supported: {why}")
        if key == "Metadata":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValueError(f"{where}['Metadata'] must be a dict of str to str")
            for name, text in value.items():
                if not _METADATA_NAME.match(name):
                    raise ValueError(
                        f"{where}['Metadata'] name {name!r} is not a valid "
                        "metadata name (letters, digits, '-', '_' and '.')"
                    )
                problem = _header_problem(text)
                if problem:
                    raise ValueError(f"{where}['Metadata'][{name!r}] {problem}")
        elif key == "Tagging" and isinstance(value, dict):
            value = urlencode(value, quote_via=quote)
        elif key in ("Expires", "ObjectLockRetainUntilDate") and isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"{where}[{key!r}] must be an aware datetime (or a str)")
            value = (
                http_date(value.timestamp())
                if key == "Expires"
                else value.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        elif key == "BucketKeyEnabled" and isinstance(value, bool):
            value = "true" if value else "false"
        if key != "Metadata":
            if not isinstance(value, str):
                raise ValueError(f"{where}[{key!r}] must be a str, not {type(value).__name__}")
            problem = _header_problem(value)
            if problem:
                raise ValueError(f"{where}[{key!r}] {problem}")
        if target.startswith("header:"):
            headers[target[7:]] = value
        else:
            kw[target] = value
    return kw, headers


# an entry of AWS_S3_GZIP_CONTENT_TYPES: type/subtype, or type/* (RFC 6838's characters)
_MIME_PATTERN = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/"
    r"(?:\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126})"
)
# boto3's client methods, as url(client_method=...) names them.
_CLIENT_METHODS = {
    "get_object": "GET",
    "put_object": "PUT",
    "head_object": "HEAD",
    "delete_object": "DELETE",
}
# boto3's presign parameters for get_object, and the query names S3 reads.
_EXTRA_PARAMS = {
    "ResponseCacheControl": "response-cache-control",
    "ResponseContentDisposition": "response-content-disposition",
    "ResponseContentEncoding": "response-content-encoding",
    "ResponseContentLanguage": "response-content-language",
    "ResponseContentType": "response-content-type",
    "ResponseExpires": "response-expires",
    "VersionId": "versionId",
}
_SIGNATURE_VERSIONS = (None, "", "s3v4", "v4")
# The canned ACLs S3 accepts on an object (AWS_S3_ACL).
_CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)
# A header value S3 reads: printable US-ASCII. TAB is refused with the other control
# characters (SigV4 implementations disagree on canonicalising it), and S3 accepts
# metadata in US-ASCII only.
_NOT_HEADER_TEXT = re.compile(r"[^\x20-\x7e]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# A lone surrogate (from os.fsdecode of a non-UTF-8 file name, say) has no UTF-8.
_SURROGATES = re.compile("[\ud800-\udfff]")
_HEADER_VALUE_MAX = 8192  # bytes per value; the C client refuses more too
_CONTENT_TYPE_MAX = 255  # RFC 6838: 127 each for type and subtype, and parameters
_METADATA_MAX = 2048  # S3: names and values of user metadata together
# Listings: AWS's, RGW's (the last key) and MinIO's continuation tokens stay far
# below this; S3 may return empty pages (delete markers), but not without end.
_LIST_TOKEN_MAX = 4096
_LIST_EMPTY_PAGES_MAX = 1000
_METADATA_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")
_REGION = re.compile(r"[A-Za-z0-9._-]{1,63}\Z")  # the C Client keeps < 64
# save() with AWS_S3_FILE_OVERWRITE = False: the names tried when each one is taken
# meanwhile (412 PreconditionFailed, or AWS's 409 ConditionalRequestConflict)
_NAME_ATTEMPTS = 10
_NAME_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")
# Inside save(): (the name asked for, max_length), so that _save can pick the next
# free name as save() would; None when _save is called directly (collectstatic's
# post-processing and its manifest overwrite on purpose).
# collectstatic: the bytes of rewritten files (css, js) held back while
# post-processing runs, at most
_HELD_MAX = 64 * 1024 * 1024
# ... and the bytes of the bodies queued or being sent, at most (one bigger body
# goes alone)
_INFLIGHT_MAX = 64 * 1024 * 1024
_SAVING: ContextVar[tuple[str, int | None] | None] = ContextVar("_SAVING", default=None)
# Attribute and keyword names whose values never show in a repr (Django's reporter
# prints locals with repr even when DEBUG hides nothing else).
_SECRET_NAMES = re.compile("SECRET|TOKEN|PASS|SIGNATURE|PROXY|CLOUDFRONT_KEY$", re.I)
_MASK = "********************"


_LOG = logging.getLogger("django_s3_storage")


def _log_request(
    method: str,
    key: str | None,
    status: int,
    attempt: int,
    again: bool,
    ms: float,
    nbytes: int,
    code: str | None,
    dropped: int,
) -> None:
    """The C client's record of one attempt of one request (Client.set_log): DEBUG
    for each, INFO for one that is tried again. No URL, query or header: no
    signature or credential can reach a log line."""
    if dropped:
        _LOG.info("%d request records were dropped (more than 256 between two flushes)", dropped)
    outcome = f"{status}" if status else "no reply"
    if code:
        outcome += f" {code}"
    # a stored key may hold control characters (a listing gives them): escaped, so
    # that no key can forge a log line
    target = "(bucket)" if key is None else key if key.isprintable() else repr(key)[1:-1]
    extra = {
        "s3_method": method,
        "s3_key": key,
        "s3_status": status,
        "s3_attempt": attempt,
        "s3_ms": ms,
        "s3_bytes": nbytes,
        "s3_code": code,
    }
    if again:
        _LOG.info(
            "%s %s: %s after %.1f ms (attempt %d); trying again",
            method,
            target,
            outcome,
            ms,
            attempt,
            extra=extra,
        )
    else:
        _LOG.debug(
            "%s %s %s %d bytes %.1f ms attempt %d",
            method,
            target,
            outcome,
            nbytes,
            ms,
            attempt,
            extra=extra,
        )


def _cloudfront_b64(data: bytes) -> str:
    """CloudFront's URL-safe base64: + = / become - _ ~."""
    return base64.b64encode(data).decode("ascii").translate(_CLOUDFRONT_B64)


_CLOUDFRONT_B64 = str.maketrans("+=/", "-_~")


def _callable_setting(value: Any, name: str) -> Any:
    return value(name) if callable(value) else value


# Where Linux distributions keep their CA bundle: Debian and Ubuntu, Fedora and RHEL,
# openSUSE, RHEL's extracted trust store, Alpine, and older Fedora. The extension's
# libcurl carries no CA path of its own (the wheel runs on all of them).
CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/cacert.pem",
)


def find_ca_bundle(candidates: tuple[str, ...] | None = None) -> str | None:
    """The CA bundle TLS verification uses when no setting names one: OpenSSL's
    SSL_CERT_FILE, then the first of the system's bundles (CA_BUNDLES), then certifi's."""
    env = os.environ.get("SSL_CERT_FILE", "")
    for path in (env, *(CA_BUNDLES if candidates is None else candidates)):
        if path and os.path.isfile(path):
            return path
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


_PROXY_RE = re.compile(
    r"(?i:https?)://(?:[^@/?#]*@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})/?", re.ASCII
)


def _network_options(s: SimpleNamespace, suffix: str) -> dict[str, Any]:
    """The Client's keyword arguments for timeouts, retries, TLS, proxies and the
    public endpoint, checked here so that a mistake names its setting."""

    def bad(name: str, why: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{name}{suffix} {why}")

    timeout = s.AWS_S3_READ_TIMEOUT
    try:
        read_timeout = float(timeout) if not isinstance(timeout, bool) else -1.0
    except (TypeError, ValueError):
        read_timeout = -1.0
    if not 0 < read_timeout <= 1e6:
        raise bad("AWS_S3_READ_TIMEOUT", f"must be a number of seconds above 0, not {timeout!r}.")
    attempts = s.AWS_S3_MAX_ATTEMPTS
    try:
        max_attempts = int(attempts) if not isinstance(attempts, (bool, float)) else 0
    except (TypeError, ValueError):
        max_attempts = 0
    if not 1 <= max_attempts <= 20:
        raise bad("AWS_S3_MAX_ATTEMPTS", f"must be a whole number from 1 to 20, not {attempts!r}.")
    options: dict[str, Any] = {"read_timeout": read_timeout, "max_attempts": max_attempts}

    verify = s.AWS_S3_VERIFY
    # the system's CA bundle, whatever AWS_S3_VERIFY says: STS at AWS and an https
    # container endpoint are always verified, and the extension's libcurl has none
    options["system_ca_bundle"] = find_ca_bundle()
    if verify is None or verify is True:
        # botocore's variable: a CA bundle for every AWS client of the process
        bundle = os.environ.get("AWS_CA_BUNDLE", "")
        if bundle and not os.path.isfile(bundle):
            raise ImproperlyConfigured(
                f"The environment's AWS_CA_BUNDLE ({bundle!r}) is not a file: point it at a "
                "PEM CA bundle, or unset it."
            )
        options["ca_bundle"] = bundle or None
        endpoint = s.AWS_S3_ENDPOINT_URL or "https:"
        if not (bundle or options["system_ca_bundle"]) and str(endpoint).lower().startswith(
            "https:"
        ):
            raise bad(
                "AWS_S3_VERIFY",
                "is on, and no CA bundle was found: this system has "
                f"none of {', '.join(CA_BUNDLES)}, and certifi is not installed. Install "
                "your distribution's ca-certificates or certifi, or set AWS_S3_VERIFY "
                "to the path of a PEM CA bundle.",
            )
    elif verify is False:
        options["verify"] = False
    elif isinstance(verify, (str, os.PathLike)) and os.path.isfile(verify):
        options["ca_bundle"] = os.fspath(verify)
    else:
        raise bad(
            "AWS_S3_VERIFY",
            f"must be True, False, or the path of a PEM CA bundle file, not {verify!r}.",
        )

    proxy = _secret(s.AWS_S3_PROXY or None)  # may hold user:password@: masked in tracebacks
    if proxy is not None:
        if not _proxy_ok(proxy):
            raise bad(
                "AWS_S3_PROXY",
                "must be a URL like http://host:port (with credentials: "
                "http://user:password@host:port) of at most 2048 characters, or '' "
                "for none.",
            )
    options["proxy"] = proxy

    public = s.AWS_S3_PUBLIC_ENDPOINT_URL or None
    if public is not None and not (
        isinstance(public, str)
        and public.startswith(("http://", "https://"))
        and not any(c in public for c in "@?#")
        and _header_problem(public, 2048, spaces=False) is None
    ):
        raise bad(
            "AWS_S3_PUBLIC_ENDPOINT_URL",
            "must be an http(s)://host[:port] URL without "
            "credentials or a query, or '' for the endpoint the server talks to.",
        )
    options["public_endpoint_url"] = public
    options["user_agent"] = _user_agent()
    return options


def _proxy_ok(proxy: Any) -> bool:
    m = _PROXY_RE.fullmatch(proxy) if isinstance(proxy, str) and len(proxy) <= 2048 else None
    return (
        m is not None
        and 1 <= int(m.group(1)) <= 65535
        and not any(ord(c) < 0x21 or ord(c) == 0x7F for c in proxy)
    )


def _user_agent() -> str:
    from django_s3_storage import __version__

    return f"django-s3-storage/{__version__} {_s3.libcurl_version}"


def _header_problem(
    value: str, limit: int = _HEADER_VALUE_MAX, secret: bool = False, spaces: bool = True
) -> str | None:
    """Why `value` cannot go into an HTTP header as it is, or None. A secret's
    characters are never quoted."""
    bad = _NOT_HEADER_TEXT.search(value) or (None if spaces else re.search(" ", value))
    if bad:
        ch = bad.group()
        kind = (
            "a space"
            if ch == " "
            else "a control character"
            if ch < " " or ch == "\x7f"
            else "a non-ASCII character"
        )
        where = f"at position {bad.start()}" if secret else f"{ch!r} at position {bad.start()}"
        return (
            f"holds {kind} ({where}); only printable US-ASCII can go into an S3 request "
            "header" + ("" if spaces else ", without spaces")
        )
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are sent"
    return None


class _Secret(str):
    """A str whose repr hides it, for the locals a traceback shows."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(_MASK)


def _secret(value: Any) -> Any:
    return _Secret(value) if isinstance(value, str) and value else value


def _secret_text(value: Any) -> Any:
    """_secret() of a str, or of bytes taken as Latin-1 text (a PEM key given as bytes)."""
    return _secret(value.decode("latin-1") if isinstance(value, bytes) else value)


class _MaskedKwargs(dict):  # type: ignore[type-arg]
    """The storage's keyword arguments: their repr hides secrets."""

    def __repr__(self) -> str:
        return repr({k: _MASK if _SECRET_NAMES.search(str(k)) else v for k, v in self.items()})


class _Settings(SimpleNamespace):
    """A storage's resolved settings: the repr hides secrets."""

    def __repr__(self) -> str:
        items = ", ".join(
            f"{k}={_MASK!r}" if _SECRET_NAMES.search(k) else f"{k}={v!r}"
            for k, v in vars(self).items()
        )
        return f"{type(self).__name__}({items})"


def _to_posix(name: str) -> str:
    return name.replace(os.sep, "/") if os.sep != "/" else name


_GROUP: Any = getattr(builtins, "ExceptionGroup", ())  # Python 3.11+


def _raise_all(errors: list[BaseException]) -> None:
    """One failure raised as it is, several as an ExceptionGroup (Python 3.11+)."""
    if len(errors) == 1 or not _GROUP:
        raise errors[0]  # 3.10: the first (the others are lost to the caller)
    raise _GROUP(f"{len(errors)} requests of collectstatic failed", errors)


class _Budget:
    """Bytes in flight, at most `cap`: acquire(n) waits until n more fit, or until
    nothing is in flight (a body bigger than the cap goes alone)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.used = cap, 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.used == 0 or self.used + n <= self.cap)
            self.used += n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


class _Collecting:
    """One collectstatic run on a storage (S3Storage.collecting()): the prefix as
    one listing took it when the run began, kept current by the run's own writes;
    deletes held back until the end (a name saved again is overwritten instead);
    uploads running on a pool of threads (the C client releases the GIL while it
    waits), all waited for and checked when the run ends."""

    def __init__(self, storage: S3Storage) -> None:
        self.thread = threading.get_ident()
        # key -> (stored size, ETag, LastModified epoch, uncompressed size or None)
        self.listed: dict[str, tuple[int, str, float, int | None]] = {}
        self.deleted: set[str] = set()  # deletes held back
        self.pending: dict[str, Future[None]] = {}
        # uploads held back while post-processing runs: a file it saves in one pass
        # and deletes in the next (a css whose references changed) is never sent
        self.holding = False
        self.held: dict[str, tuple[Any, ...]] = {}
        self.held_bytes = 0
        self.sent: set[str] = set()  # keys the server has: listed, or uploaded
        self.submit: Callable[..., Future[None]] | None = None
        self.workers = max(1, int(storage.settings.AWS_S3_MAX_POOL_CONNECTIONS))
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="s3-collect")
        self.window = _Budget(_INFLIGHT_MAX)  # the bodies held in memory
        self.errors: list[BaseException] = []
        self.dirs: dict[str, int] = {}  # "directory" -> live keys under it
        self.puts = self.skipped = 0
        # (MD5 of a body, compressible) -> (the stored bytes' ETag, the size before gzip)
        self.packs: dict[tuple[bytes, bool], tuple[str, int | None]] = {}
        # MD5 of a body -> its gzip and size before (None: not smaller), kept while they
        # fit in gzip_budget bytes: post-processing stores most files twice (under their
        # name and their hashed name), compressed once
        self.gzips: dict[bytes, Future[tuple[bytes, int] | None]] = {}
        self.gzip_budget = _HELD_MAX
        self.gzip_lock = threading.Lock()
        # post_process's files: name -> (source storage, its name), the same bytes
        self.sources: dict[str, tuple[Any, str]] = {}
        # keys whose bytes are their source file's (saved, or skipped as unchanged, by
        # the copying before post-processing, and not saved since): read from the
        # source, never waited for
        self.copied: set[str] = set()

    def live(self, key: str) -> bool:
        return key in self.listed and key not in self.deleted

    def _count(self, key: str, step: int) -> None:
        parts = key.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            self.dirs[d] = self.dirs.get(d, 0) + step

    def put(self, key: str, entry: tuple[int, str, float, int | None]) -> None:
        """`key` holds `entry` from now on."""
        if not self.live(key):
            self._count(key, 1)
        self.listed[key] = entry
        self.deleted.discard(key)

    def hold_delete(self, key: str) -> None:
        if self.live(key):
            self._count(key, -1)
        self.deleted.add(key)

    def active(self) -> bool:
        return threading.get_ident() == self.thread

    def upload(self, key: str, args: tuple[Any, ...], hold: bool = False) -> None:
        old = self.held.pop(key, None)  # superseded: never sent
        if old is not None:
            self.held_bytes -= len(old[2])
        if hold and self.holding and self.held_bytes + len(args[2]) <= _HELD_MAX:
            self.held[key] = args
            self.held_bytes += len(args[2])
            return
        assert self.submit is not None
        self.window.acquire(len(args[2]))
        try:
            self.pending[key] = self.submit(*args)
        except BaseException:
            self.window.release(len(args[2]))  # never in flight
            raise
        self.sent.add(key)
        self.puts += 1

    def release(self) -> None:
        """Sends the uploads held back."""
        self.holding = False
        held, self.held, self.held_bytes = self.held, {}, 0
        for key, args in held.items():
            self.upload(key, args)

    def wait(self, key: str, held: bool = True) -> None:
        """Waits for the upload of `key`, if one runs (held back: sent first, unless
        `held` is False); its failure is raised."""
        args = self.held.pop(key, None) if held else None
        if args is not None:
            self.held_bytes -= len(args[2])
            self.upload(key, args)
        future = self.pending.pop(key, None)
        if future is not None:
            try:
                future.result()
            except BaseException as e:
                # raised here, and again when the run ends: the caller may catch it
                # (Django's hashed_name() takes an OSError from open() for "no file")
                self.errors.append(e)
                raise

    def flush(self) -> None:
        """Sends what is held back and waits for every upload; their failures
        raised."""
        self.release()
        errors = []
        while self.pending:
            try:
                self.wait(next(iter(self.pending)))
            except BaseException as e:  # noqa: BLE001 - every failure is raised
                errors.append(e)
        if errors:
            _raise_all(errors)


@deconstructible
class S3Storage(Storage):
    """Django's Storage API on an S3 bucket."""

    settings: _Settings
    _constructor_args: tuple[Any, Any]

    default_auth_settings: dict[str, Any] = {
        # None: the C Client resolves it (AWS_REGION, AWS_DEFAULT_REGION, the profile's
        # region, us-east-1); "" lets the server's redirects tell
        "AWS_REGION": None,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
    }

    default_s3_settings: dict[str, Any] = {
        "AWS_S3_BUCKET_NAME": "",
        "AWS_S3_ADDRESSING_STYLE": "auto",
        "AWS_S3_ENDPOINT_URL": "",
        "AWS_S3_KEY_PREFIX": "",
        "AWS_S3_BUCKET_AUTH": True,
        "AWS_S3_MAX_AGE_SECONDS": 60 * 60,  # 1 hour
        "AWS_S3_PUBLIC_URL": "",
        "AWS_S3_REDUCED_REDUNDANCY": False,
        "AWS_S3_CONTENT_DISPOSITION": "",
        "AWS_S3_CONTENT_LANGUAGE": "",
        "AWS_S3_METADATA": {},
        "AWS_S3_ENCRYPT_KEY": False,
        "AWS_S3_KMS_ENCRYPTION_KEY_ID": "",
        "AWS_S3_GZIP": True,
        # None: text/*, and the XML, JSON, HTML and JavaScript types; else a list
        "AWS_S3_GZIP_CONTENT_TYPES": None,
        # boto3's object parameters for every upload (get_object_parameters())
        "AWS_S3_OBJECT_PARAMETERS": {},
        # CloudFront signed URLs of AWS_S3_PUBLIC_URL: the key's ID, and the RSA
        # private key (PEM text, or the path of a PEM file)
        "AWS_S3_CLOUDFRONT_KEY_ID": "",
        "AWS_S3_CLOUDFRONT_KEY": "",
        "AWS_S3_SIGNATURE_VERSION": None,
        "AWS_S3_FILE_OVERWRITE": False,
        "AWS_S3_MAX_POOL_CONNECTIONS": 10,
        "AWS_S3_CONNECT_TIMEOUT": 60,
        "AWS_S3_USE_THREADS": True,
        # the shared-files profile credentials and region come from (None: AWS_PROFILE)
        "AWS_S3_PROFILE": None,
        # True: unsigned requests, and no credential lookup at all
        "AWS_S3_ANONYMOUS": False,
        "AWS_S3_READ_TIMEOUT": 60,
        "AWS_S3_MAX_ATTEMPTS": 3,
        "AWS_S3_VERIFY": True,
        "AWS_S3_PROXY": "",
        "AWS_S3_PUBLIC_ENDPOINT_URL": "",
        "AWS_S3_ACL": "auto",
        # bigger uploads go multipart, in parts of this size (grown to stay within
        # S3's 10,000 parts), several in flight on the pooled connections
        "AWS_S3_MULTIPART_THRESHOLD": 8 * 1024 * 1024,
        "AWS_S3_MULTIPART_CHUNKSIZE": 8 * 1024 * 1024,
    }

    s3_settings_suffix = ""

    #: save() compresses in memory up to this size, and to a temporary file beyond.
    gzip_spool_size = 1024 * 1024

    def __init__(self, **kwargs: Any) -> None:
        # rebound first: a traceback through here shows the keyword arguments masked
        kwargs = _MaskedKwargs(self.__dict__.pop("_s3_kwargs", {}), **kwargs)
        # @deconstructible kept them in a plain dict, which a repr would show (no
        # local holds that dict: the DEBUG page prints locals)
        if "_constructor_args" in self.__dict__:
            self._constructor_args = (
                self._constructor_args[0],
                _MaskedKwargs(self._constructor_args[1]),
            )
        for key in kwargs:
            upper = key.upper()
            if upper not in self.default_auth_settings and upper not in self.default_s3_settings:
                raise ImproperlyConfigured(f"Unknown S3Storage parameter: {key}")
        self._kwargs = kwargs
        self._setup()
        setting_changed.connect(self._setting_changed_received)
        super().__init__()

    # ---- settings ----------------------------------------------------------

    def _setup(self) -> None:
        s = _Settings()
        for key, default in self.default_auth_settings.items():
            setattr(s, key, self._kwargs.get(key.lower(), getattr(settings, key, default)))
        s.AWS_SECRET_ACCESS_KEY = _secret(s.AWS_SECRET_ACCESS_KEY)
        s.AWS_SESSION_TOKEN = _secret(s.AWS_SESSION_TOKEN)
        for key, default in self.default_s3_settings.items():
            setattr(
                s,
                key,
                self._kwargs.get(
                    key.lower(), getattr(settings, key + self.s3_settings_suffix, default)
                ),
            )
        s.AWS_S3_CLOUDFRONT_KEY = _secret_text(s.AWS_S3_CLOUDFRONT_KEY)  # no raw local
        suffix = self.s3_settings_suffix
        if not s.AWS_S3_BUCKET_NAME:
            raise ImproperlyConfigured(
                f"AWS_S3_BUCKET_NAME{suffix} is required: the name of the S3 bucket that "
                f"{type(self).__name__} stores files in."
            )
        if s.AWS_S3_SIGNATURE_VERSION not in _SIGNATURE_VERSIONS:
            raise ImproperlyConfigured(
                f"AWS_S3_SIGNATURE_VERSION{suffix} = {s.AWS_S3_SIGNATURE_VERSION!r} is not "
                "supported: use None or 's3v4' (this storage signs with AWS Signature V4)."
            )
        if s.AWS_S3_ADDRESSING_STYLE not in ("auto", "path", "virtual"):
            raise ImproperlyConfigured(
                f"AWS_S3_ADDRESSING_STYLE{suffix} must be 'auto', 'path' or 'virtual', "
                f"not {s.AWS_S3_ADDRESSING_STYLE!r}."
            )
        self._check_settings(s)
        # Only the settings' own keys: the environment, the shared files and the
        # roles are the C Client's to find, lazily, on the first request.
        if bool(s.AWS_ACCESS_KEY_ID) != bool(s.AWS_SECRET_ACCESS_KEY):
            raise ImproperlyConfigured(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither "
                "to take credentials from the environment, ~/.aws or the instance's role."
            )
        anonymous = bool(s.AWS_S3_ANONYMOUS)
        signed = bool(s.AWS_ACCESS_KEY_ID) and not anonymous  # no secret in a local
        profile = s.AWS_S3_PROFILE or None
        if profile is not None and not isinstance(profile, str):
            raise ImproperlyConfigured(
                f"AWS_S3_PROFILE{suffix} must be the name of a profile in ~/.aws/config or "
                "~/.aws/credentials, or None."
            )
        try:
            self._client = _s3.Client(
                s.AWS_S3_BUCKET_NAME,
                endpoint_url=s.AWS_S3_ENDPOINT_URL or None,
                region=s.AWS_REGION,
                access_key=s.AWS_ACCESS_KEY_ID if signed else None,
                secret_key=s.AWS_SECRET_ACCESS_KEY if signed else None,
                session_token=(s.AWS_SESSION_TOKEN or None) if signed else None,
                profile=profile,
                anonymous=anonymous,
                addressing_style=s.AWS_S3_ADDRESSING_STYLE,
                connect_timeout=float(s.AWS_S3_CONNECT_TIMEOUT),
                max_connections=int(s.AWS_S3_MAX_POOL_CONNECTIONS),
                **_network_options(s, suffix),
            )
        except ValueError as e:
            raise ImproperlyConfigured(f"{type(self).__name__}: {e}") from None
        self._prefix = (
            posixpath.normpath(_to_posix(s.AWS_S3_KEY_PREFIX)).strip("/")
            if s.AWS_S3_KEY_PREFIX
            else ""
        )
        if self._prefix == ".":
            self._prefix = ""
        self._cloudfront = self._cloudfront_signer(s)
        # the request log: only when the logger would show something (else the C
        # client records nothing); its level is read here, when the storage is set up
        if _LOG.isEnabledFor(logging.INFO):
            self._client.set_log(_log_request)
        self.settings = s
        self._url_setup(s)

    def _cloudfront_signer(self, s: _Settings) -> tuple[str, Any] | None:
        """(key ID, the loaded key) for CloudFront signed URLs, or None."""
        key_id, key, sfx = (
            s.AWS_S3_CLOUDFRONT_KEY_ID,
            s.AWS_S3_CLOUDFRONT_KEY,
            self.s3_settings_suffix,
        )
        if not key_id and not key:
            return None
        if not (key_id and key):
            raise ImproperlyConfigured(
                f"AWS_S3_CLOUDFRONT_KEY_ID{sfx} and AWS_S3_CLOUDFRONT_KEY{sfx} go together: "
                "set both for CloudFront signed URLs, or neither."
            )
        if not s.AWS_S3_PUBLIC_URL:
            raise ImproperlyConfigured(
                f"AWS_S3_CLOUDFRONT_KEY{sfx} signs URLs of the CloudFront distribution that "
                f"AWS_S3_PUBLIC_URL{sfx} names, and it is not set."
            )
        if not isinstance(key_id, str) or not re.fullmatch(r"[A-Za-z0-9]{1,128}", key_id):
            raise ImproperlyConfigured(
                f"AWS_S3_CLOUDFRONT_KEY_ID{sfx} must be the ID of the "
                f"key (letters and digits), not {key_id!r}."
            )
        # every local holding the key is a _Secret (masked in tracebacks' locals); the
        # bytes SigningKey takes are a temporary
        pem = key
        if not isinstance(pem, str):
            raise ImproperlyConfigured(
                f"AWS_S3_CLOUDFRONT_KEY{sfx} must be PEM text or the "
                f"path of a PEM file, not a {type(key).__name__}."
            )
        if not pem.lstrip().startswith("-----BEGIN"):
            try:
                with open(pem, "rb") as f:
                    pem = _secret_text(f.read(64 * 1024 + 1))
            except (OSError, ValueError) as e:  # nothing of the value in the message
                raise ImproperlyConfigured(
                    f"AWS_S3_CLOUDFRONT_KEY{sfx} is neither PEM text nor the path of a "
                    f"readable file ({getattr(e, 'strerror', None) or type(e).__name__})."
                ) from None
        try:
            return key_id, _s3.SigningKey(pem.encode("latin-1", "replace"))
        except ValueError as e:
            raise ImproperlyConfigured(f"AWS_S3_CLOUDFRONT_KEY{sfx}: {e}.") from None

    def _url_setup(self, s: _Settings) -> None:
        """Tells the C client which form url() takes, from the settings now in force,
        so that url() of a plain name is one C call (UrlMethod)."""
        mode, public, expires = 0, "", 1
        if os.sep != "/" or self._cloudfront is not None:
            pass  # names need _to_posix, or signing: storage.py's path
        elif s.AWS_S3_PUBLIC_URL:
            # urljoin() of a relative path without dot segments, empty segments,
            # '?', '#' or a scheme (what the C side escapes it to) appends it to
            # the base's joined directory; anything else: storage.py's path
            joined = urljoin(s.AWS_S3_PUBLIC_URL, "x")
            if isinstance(joined, str) and joined.endswith("x") and joined.isprintable():
                mode, public = 1, joined[:-1]
        elif not s.AWS_S3_BUCKET_AUTH:
            mode = 2
        else:
            mode, expires = 3, int(s.AWS_S3_MAX_AGE_SECONDS)
            if not 1 <= expires <= 604800:
                mode, expires = 0, 1  # the C client says what is wrong, on each call
        self._client.url_setup(mode, self._prefix, public, expires)

    def _check_settings(self, s: _Settings) -> None:
        """Refuses, naming the setting, every value that would reach a request
        header, the credential scope or the URL in a form the wire cannot carry."""
        sfx = self.s3_settings_suffix

        def refuse(setting: str, problem: str) -> None:
            raise ImproperlyConfigured(f"{setting} {problem}.")

        for key, limit in (
            ("AWS_REGION", 63),
            ("AWS_ACCESS_KEY_ID", 128),
            ("AWS_SESSION_TOKEN", _HEADER_VALUE_MAX),
        ):
            value = getattr(s, key)
            if value is None or value == "":
                continue  # not set: the client resolves it
            if not isinstance(value, str):
                refuse(key, f"must be a string, not {type(value).__name__}")
            problem = _header_problem(value, limit, secret=True, spaces=False)
            if problem:
                refuse(key, problem)
            if key == "AWS_REGION" and not _REGION.match(value):
                refuse(key, f"= {value!r} is not a region name such as 'us-east-1'")
            if key == "AWS_ACCESS_KEY_ID" and ("/" in value or "," in value):
                refuse(key, "holds '/' or ',', which break the credential scope")
        for key, limit in (("AWS_S3_BUCKET_NAME", 255), ("AWS_S3_ENDPOINT_URL", 2048)):
            value = getattr(s, key)
            if value:
                problem = _header_problem(str(value), limit, secret=True, spaces=False)
                if problem:
                    refuse(key + sfx, problem)
        bad = _CONTROL_CHARS.search(s.AWS_S3_KEY_PREFIX or "")
        if bad:
            refuse(
                "AWS_S3_KEY_PREFIX" + sfx,
                f"holds a control character ({bad.group()!r}); "
                "names with control characters are refused",
            )
        bad = _SURROGATES.search(s.AWS_S3_KEY_PREFIX or "")
        if bad:
            refuse(
                "AWS_S3_KEY_PREFIX" + sfx,
                f"holds a lone surrogate ({bad.group()!r}), which UTF-8 cannot encode",
            )
        try:
            _object_parameters(s.AWS_S3_OBJECT_PARAMETERS, "AWS_S3_OBJECT_PARAMETERS" + sfx)
        except ValueError as e:
            raise ImproperlyConfigured(f"{e}.") from None
        types = s.AWS_S3_GZIP_CONTENT_TYPES
        if types is not None and (
            isinstance(types, str)
            or not isinstance(types, (list, tuple))
            or not all(isinstance(t, str) and _MIME_PATTERN.fullmatch(t) for t in types)
        ):
            refuse(
                "AWS_S3_GZIP_CONTENT_TYPES" + sfx,
                f"= {types!r} must be None (text/*, and "
                "the XML, JSON, HTML and JavaScript types) or a list of content types "
                "such as 'text/css' or 'text/*'",
            )
        acl = s.AWS_S3_ACL
        if acl is not None and acl != "auto" and acl not in _CANNED_ACLS:
            refuse(
                "AWS_S3_ACL" + sfx,
                f"= {acl!r} is not supported: use 'auto' (private with "
                "AWS_S3_BUCKET_AUTH, else public-read), None (send no ACL: buckets that "
                f"refuse ACLs) or one of S3's canned ACLs: {', '.join(_CANNED_ACLS)}",
            )
        for key in ("AWS_S3_MAX_AGE_SECONDS", "AWS_S3_MAX_AGE_SECONDS_CACHED"):
            value = getattr(s, key, 0)
            if not (
                (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
                or (isinstance(value, str) and value.isascii() and value.isdigit())
            ):
                refuse(key + sfx, f"= {value!r} must be a whole number of seconds")
        for key in (
            "AWS_S3_CONTENT_DISPOSITION",
            "AWS_S3_CONTENT_LANGUAGE",
            "AWS_S3_KMS_ENCRYPTION_KEY_ID",
            "AWS_S3_ENCRYPT_KEY",
        ):
            value = getattr(s, key)
            if not value or callable(value) or isinstance(value, bool):
                continue
            if not isinstance(value, str):
                refuse(key + sfx, f"must be a string or a callable, not {type(value).__name__}")
            problem = _header_problem(value)
            if problem:
                refuse(key + sfx, problem)
        meta = s.AWS_S3_METADATA
        if not isinstance(meta, dict):
            refuse("AWS_S3_METADATA" + sfx, f"must be a dict, not {type(meta).__name__}")
        total = 0
        for name, value in meta.items():
            if not isinstance(name, str) or not _METADATA_NAME.match(name):
                refuse(
                    "AWS_S3_METADATA" + sfx,
                    f"name {name!r} is not a valid metadata name "
                    "(letters, digits, '-', '_' and '.')",
                )
            total += len(name)
            if not callable(value):
                problem = _header_problem(str(value))
                if problem:
                    refuse(f"AWS_S3_METADATA{sfx}[{name!r}]", problem)
                total += len(str(value))
        if total > _METADATA_MAX:
            refuse(
                "AWS_S3_METADATA" + sfx,
                f"adds up to {total} bytes of names and values; "
                f"S3 accepts {_METADATA_MAX} in total",
            )
        for key, low, what in (
            ("AWS_S3_MULTIPART_THRESHOLD", 0, "0"),
            ("AWS_S3_MULTIPART_CHUNKSIZE", _PART_MIN, "5 MiB (S3's minimum)"),
        ):
            value = getattr(s, key)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not low <= value <= _PART_MAX
            ):
                refuse(key + sfx, f"= {value!r} must be a number of bytes from {what} to 5 GiB")

    _CONFIGURED = ("settings", "_client", "_prefix", "_cloudfront")

    def _setting_changed_received(self, setting: str, **kwargs: Any) -> None:
        # Forget the configuration; the next use builds it again from the settings
        # then in force (so a setting that is invalid for a while breaks nothing).
        if setting.startswith("AWS_"):
            for attr in self._CONFIGURED:
                self.__dict__.pop(attr, None)

    def __getattr__(self, name: str) -> Any:
        # Only reached when the attribute is missing: after a setting changed.
        if name in self._CONFIGURED and "_kwargs" in self.__dict__:
            self._setup()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        return {
            "_kwargs": self._kwargs,
            "_constructor_args": getattr(self, "_constructor_args", ((), self._kwargs)),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._constructor_args = state["_constructor_args"]
        self.__init__(**state["_kwargs"])  # type: ignore[misc]

    # ---- names ---------------------------------------------------------------

    def _get_key_name(self, name: str) -> str:
        """The S3 key of a name: the prefix joined with the normalised name.
        A name that would land outside the prefix is refused before any request."""
        name = _to_posix(name)
        if (
            name
            and "//" not in name
            and "/." not in name
            and name[0] not in "./"
            and name[-1] != "/"
            and name.isprintable()
        ):
            # nothing to normalise and nowhere to escape to: the common case, made cheap
            return f"{self._prefix}/{name}" if self._prefix else name
        bad = _CONTROL_CHARS.search(name)
        if bad:
            raise SuspiciousFileOperation(
                f"The name {name!r} holds a control character ({bad.group()!r}); "
                "such names are refused."
            )
        bad = _SURROGATES.search(name)
        if bad:
            raise SuspiciousFileOperation(
                f"The name {name!r} holds a lone surrogate ({bad.group()!r}), which UTF-8 "
                "cannot encode; such names are refused."
            )
        name = name.lstrip("/")
        key = posixpath.normpath(posixpath.join(self._prefix, name)) if name else self._prefix
        if key == ".":
            key = ""
        if (
            key == ".."
            or key.startswith("../")
            or key.startswith("/")
            or (self._prefix and key != self._prefix and not key.startswith(self._prefix + "/"))
        ):
            raise SuspiciousFileOperation(
                f"The name {name!r} resolves outside the storage's key prefix."
            )
        return key

    def _object_key(self, name: str) -> str:
        """The key of the object `name` names: never the prefix itself or the
        bucket's root, which no object has (a URL of the root lists the bucket)."""
        posix = _to_posix(name)
        if (
            posix
            and "//" not in posix
            and "/." not in posix
            and posix[0] not in "./"
            and posix[-1] != "/"
            and posix.isprintable()
        ):
            return f"{self._prefix}/{posix}" if self._prefix else posix  # never the root
        key = self._get_key_name(name)
        if not key or key == self._prefix:
            raise SuspiciousFileOperation(
                f"The name {name!r} names no file: it resolves to the storage's root."
            )
        return key

    def _acl(self) -> str | None:
        """The canned ACL uploads and copies send (None: no x-amz-acl header)."""
        acl: str | None = self.settings.AWS_S3_ACL
        if acl == "auto":
            return "private" if self.settings.AWS_S3_BUCKET_AUTH else "public-read"
        return acl

    def _from_callable(self, value: Any, setting: str) -> Any:
        """A callable setting's return value, refused before any request when it
        cannot go into a header; the error names the setting."""
        problem = (
            _header_problem(value)
            if isinstance(value, str)
            else f"is a {type(value).__name__}, not a str"
        )
        if problem:
            raise ValueError(
                f"The callable of {setting}{self.s3_settings_suffix} returned a "
                f"value that {problem}."
            )
        return value

    def _check_metadata_total(self, metadata: dict[str, str]) -> None:
        total = sum(len(k) + len(v) for k, v in metadata.items())
        if total > _METADATA_MAX:
            raise ValueError(
                f"AWS_S3_METADATA{self.s3_settings_suffix} adds up to {total} "
                f"bytes of names and values with this file; S3 accepts "
                f"{_METADATA_MAX} in total."
            )

    # ---- uploads ---------------------------------------------------------------

    def _put_params(self, name: str, max_age: int | None = None) -> dict[str, Any]:
        s = self.settings
        auth = s.AWS_S3_BUCKET_AUTH
        params: dict[str, Any] = {
            "acl": self._acl(),
            "cache_control": "{},max-age={}".format(
                "private" if auth else "public",
                s.AWS_S3_MAX_AGE_SECONDS if max_age is None else max_age,
            ),
            "metadata": {k: str(_callable_setting(v, name)) for k, v in s.AWS_S3_METADATA.items()},
            "storage_class": "REDUCED_REDUNDANCY" if s.AWS_S3_REDUCED_REDUNDANCY else "STANDARD",
        }
        for key, value in s.AWS_S3_METADATA.items():
            if callable(value):
                self._from_callable(params["metadata"][key], f"AWS_S3_METADATA[{key!r}]")
        self._check_metadata_total(params["metadata"])
        disposition = _callable_setting(s.AWS_S3_CONTENT_DISPOSITION, name)
        if disposition:
            params["content_disposition"] = disposition
            if callable(s.AWS_S3_CONTENT_DISPOSITION):
                self._from_callable(disposition, "AWS_S3_CONTENT_DISPOSITION")
        language = _callable_setting(s.AWS_S3_CONTENT_LANGUAGE, name)
        if language:
            params["content_language"] = language
            if callable(s.AWS_S3_CONTENT_LANGUAGE):
                self._from_callable(language, "AWS_S3_CONTENT_LANGUAGE")
        if s.AWS_S3_ENCRYPT_KEY:
            if isinstance(s.AWS_S3_ENCRYPT_KEY, str):
                params["server_side_encryption"] = s.AWS_S3_ENCRYPT_KEY
                if s.AWS_S3_KMS_ENCRYPTION_KEY_ID:
                    params["sse_kms_key_id"] = s.AWS_S3_KMS_ENCRYPTION_KEY_ID
            else:
                params["server_side_encryption"] = "AES256"
        extra = self.get_object_parameters(name)
        if extra:
            kw, headers = _object_parameters(
                extra, f"{type(self).__name__}.get_object_parameters({name!r})"
            )
            params["metadata"].update(kw.pop("metadata", {}))
            self._check_metadata_total(params["metadata"])
            params.update(kw)
            if headers:
                params["headers"] = headers
        return params

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        """boto3's object parameters for the upload of `name` (django-storages'
        hook): AWS_S3_OBJECT_PARAMETERS by default. They win over the other
        settings: {"Tagging": "team=web", "StorageClass": "STANDARD_IA",
        "Expires": datetime, "ContentType": ..., "Metadata": {...}, ...}."""
        return dict(self.settings.AWS_S3_OBJECT_PARAMETERS)

    def _upload_params(self, name: str, content_type: str, gzip_size: int | None) -> dict[str, Any]:
        """The object's headers for an upload of name: gzip_size, the size before
        compression, when the body is gzipped."""
        params = self._put_params(name, self._max_age_for(name))
        params.setdefault("content_type", content_type)  # ContentType given wins
        if gzip_size is not None:
            params["content_encoding"] = "gzip"
            params["metadata"][UNCOMPRESSED_SIZE_META_KEY] = str(gzip_size)
            self._check_metadata_total(params["metadata"])
        return params

    def _max_age_for(self, name: str) -> int | None:
        """The max age of the Cache-Control header of `name` (None: the setting's)."""
        return None

    @staticmethod
    def _content_type(name: str) -> str:
        return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"

    def _compressible(self, content_type: str) -> bool:
        mime = content_type.split(";", 1)[0].strip().lower()
        family, _, subtype = mime.partition("/")
        types = self.settings.AWS_S3_GZIP_CONTENT_TYPES
        if types is None:
            return family == "text" or subtype.split("+")[-1] in _GZIP_SUBTYPES
        return any(t.lower() in (mime, family + "/*") for t in types)

    @staticmethod
    def _rewinds(content: Any) -> bool:
        """Whether the content can be read again from its start."""
        return hasattr(content, "seek") and getattr(content, "seekable", lambda: True)()

    @classmethod
    def _chunks(cls, content: Any) -> Iterator[bytes]:
        """The content from its start, in chunks; str (a text file) as UTF-8."""
        if cls._rewinds(content):
            content.seek(0)
        if hasattr(content, "chunks"):
            chunks = content.chunks(_CHUNK)
        else:
            chunks = iter(lambda: content.read(_CHUNK), content.read(0))
        for chunk in chunks:
            yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk

    def _gzipped(self, content: Any) -> tuple[Any, int] | None:
        """The content compressed chunk by chunk into a temporary file (in memory
        while small) and its original size; None when that is not smaller. Content
        that cannot be read twice goes compressed whatever the outcome."""
        rewinds = self._rewinds(content)
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        spool = tempfile.SpooledTemporaryFile(max_size=self.gzip_spool_size)
        size = packed = 0
        for chunk in self._chunks(content):
            size += len(chunk)
            packed += spool.write(packer.compress(chunk))
            if rewinds and packed >= size and packed > self.gzip_spool_size:
                break  # it will not get smaller than what it holds now
        else:
            packed += spool.write(packer.flush())
            if packed < size or not rewinds:
                spool.seek(0)
                return spool, size
        spool.close()
        return None

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        """Django's save(); with AWS_S3_FILE_OVERWRITE = False the upload commits only
        if the name is still free, and the name returned is the one stored."""
        asked = content.name if name is None else name
        token = _SAVING.set((str(asked), max_length))
        try:
            return super().save(name, content, max_length)
        finally:
            _SAVING.reset(token)

    def _save(self, name: str, content: Any) -> str:
        s = self.settings
        saving = _SAVING.get()
        # only names that save() found free are taken conditionally: a direct _save
        # (post-processing, the manifest) overwrites, as it always did
        conditional = saving is not None and not s.AWS_S3_FILE_OVERWRITE
        asked, max_length = saving if saving is not None else (name, None)
        # the type the browser sent with an upload wins over the guess from the name,
        # unless it cannot go into a header (a hostile client chose it)
        content_type = getattr(content, "content_type", None)
        if (
            not isinstance(content_type, str)
            or not content_type
            or _header_problem(content_type, _CONTENT_TYPE_MAX) is not None
        ):
            content_type = self._content_type(name)
        run = self._collecting_run()
        if run is not None:
            saved = self._save_collecting(run, name, content, content_type, conditional)
            if saved is not None:
                return saved
            key = self._object_key(name)
            run.wait(key)
            if key in run.deleted:  # overwritten instead of deleted
                conditional = False
            run.put(key, (0, "", time.time(), None))  # stored below, or raised
        source, spool, copy = content, None, None
        gzip_size = None
        if s.AWS_S3_GZIP and self._compressible(content_type):
            packed = self._gzipped(content)
            if packed is not None:
                spool, gzip_size = packed
                source = File(spool)
        try:
            size_hint = source.size  # of what goes: the gzip'd spool's, once made
        except (AttributeError, OSError, TypeError, ValueError):
            size_hint = -1
        if not isinstance(size_hint, int):
            size_hint = -1
        if conditional and not self._rewinds(source):
            # a name taken meanwhile means sending it again: keep what goes
            copy = tempfile.SpooledTemporaryFile(max_size=self.gzip_spool_size)
        try:
            for _ in range(_NAME_ATTEMPTS):
                params = self._upload_params(name, content_type, gzip_size)
                try:
                    with self._writer(
                        self._object_key(name), params, size_hint, if_none_match=conditional
                    ) as w:
                        for chunk in self._chunks(source):
                            w.write(chunk)
                            if copy is not None:
                                copy.write(chunk)
                    return name
                except S3Error as e:
                    if not conditional or e.code not in _NAME_TAKEN:
                        raise
                if copy is not None:  # sent once: from here on it is the source
                    source, spool, copy = File(copy), copy, None
                # taken since save() looked: the next free name, as save() finds it
                tried, name = name, self.get_available_name(asked, max_length=max_length)
            raise FileExistsError(
                f"{_NAME_ATTEMPTS} names in a row were taken by other writers while this file "
                f"was uploaded; the last one tried: {tried!r}"
            )
        finally:
            for f in (spool, copy):
                if f is not None:
                    f.close()

    def _writer(
        self, key: str, params: dict[str, Any], size_hint: int = -1, if_none_match: bool = False
    ) -> Any:
        s = self.settings
        return self._client.writer(
            key,
            part_size=s.AWS_S3_MULTIPART_CHUNKSIZE,
            threshold=s.AWS_S3_MULTIPART_THRESHOLD,
            size_hint=size_hint,
            if_none_match=if_none_match,
            **params,
        )

    # ---- reads -------------------------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        """A file that streams: reads fetch the object lazily, writes go up as they
        come and are stored on close()."""
        key = self._object_key(name)
        run = self._collecting_run()
        if run is not None and mode in READ_MODES and key in run.copied and run.live(key):
            source = run.sources.get(_to_posix(name))
            if source is not None:
                # collectstatic copied it from there (or skipped it as unmodified): the
                # same bytes, whether or not its upload has ended
                opened: File[Any] = source[0].open(source[1], mode)
                return opened
        if run is not None:
            run.wait(key)
            if mode in WRITE_MODES:
                return self._open_writing(name, key, mode, run)
            if key in run.deleted:  # a delete held back: it goes now
                run.deleted.discard(key)
                run.listed.pop(key, None)
                self._client.delete_object(key)
        if run is not None and mode in READ_MODES and key not in run.pending:
            source = run.sources.get(_to_posix(name))
            if source is not None and key in run.listed:
                # skipped as unmodified: what the bucket holds came from there too
                opened = source[0].open(source[1], mode)
                return opened
        if mode in READ_MODES:
            return S3File(self._client.reader(key, decompress=True), name, self, mode)
        if mode in WRITE_MODES:
            return self._open_writing(name, key, mode, None)
        raise ValueError(
            f"S3 files open for reading ({', '.join(READ_MODES)}) or for "
            f"writing ({', '.join(WRITE_MODES)}), not {mode!r}"
        )

    def _open_writing(self, name: str, key: str, mode: str, run: _Collecting | None) -> S3WriteFile:
        params = self._put_params(name, self._max_age_for(name))
        params.setdefault("content_type", self._content_type(name))
        stored = None
        if run is not None:

            def stored(size: int) -> None:
                # in the listing from now on, its ETag unknown (no save skipped
                # against it); a delete held back for the name is not sent
                run.copied.discard(key)
                run.put(key, (size, "", time.time(), None))
                run.sent.add(key)

        return S3WriteFile(self._writer(key, params), name, self, mode, stored)

    # ---- collectstatic ----------------------------------------------------------

    _run: _Collecting | None = None

    def _collecting_run(self) -> _Collecting | None:
        run = self._run
        return run if run is not None and run.active() else None

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """collectstatic's run (the package's collectstatic command enters it): one
        listing of the prefix answers exists() and the modified times, a PUT whose
        bytes the listed object has already (its ETag is their MD5) is not sent,
        a DELETE followed by a save of the same name is not sent, and the uploads
        run concurrently; every one is waited for and checked before this returns,
        every failure raised. Only the thread that entered sees the listing: other
        threads, and everything after the run, ask the server as always."""
        if self._run is not None:
            if self._run.active():  # the package's command inside a run from code
                yield
                return
            raise RuntimeError("collecting() is already active on this storage")
        run = _Collecting(self)
        run.submit = lambda *args: run.pool.submit(self._put_body, run, *args)
        base = self._prefix + "/" if self._prefix else ""
        for page in self._iter_pages(base or None, None):
            for key, size, etag, stamp, _class in page["Contents"]:
                run.put(key, (size, etag, stamp, None))
                run.sent.add(key)
        self._run = run
        failed: BaseException | None = None
        try:
            yield
        except BaseException as e:
            failed = e
            raise
        finally:
            self._run = None
            errors = self._finish_run(run)
            if errors and failed is None:
                _raise_all(errors)
            raised = failed.exceptions if isinstance(failed, _GROUP) else (failed,)
            errors = [e for e in errors if all(e is not r for r in raised)]
            if errors and failed is not None and hasattr(failed, "add_note"):
                for other in errors:
                    failed.add_note(f"also failed: {other!r}")

    def _finish_run(self, run: _Collecting) -> list[BaseException]:
        """Waits for every upload, then sends the deletes held back; the failures."""
        errors = list(run.errors)
        run.release()
        for future in run.pending.values():
            try:
                future.result()
            except BaseException as e:  # noqa: BLE001 - every failure is raised
                errors.append(e)
        run.pending.clear()
        deletes = [run.pool.submit(self._client.delete_object, key) for key in sorted(run.deleted)]
        for future in deletes:
            try:
                future.result()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        run.pool.shutdown(wait=True)
        return errors

    def _run_exists(self, run: _Collecting, key: str) -> bool:
        return run.live(key) or run.dirs.get(key, 0) > 0

    def _save_collecting(
        self, run: _Collecting, name: str, content: Any, content_type: str, conditional: bool
    ) -> str | None:
        """_save inside collecting(): the upload queued (or skipped when the listed
        object has these bytes); None for a body too big to hold in memory, which
        goes the usual way."""
        s = self.settings
        key = self._object_key(name)
        # before post-processing, collectstatic saves its source files' bytes
        if run.sources:
            run.copied.discard(key)
        else:
            run.copied.add(key)
        try:
            size = content.size
        except (AttributeError, OSError, TypeError, ValueError):
            return None
        if not isinstance(size, int) or size > s.AWS_S3_MULTIPART_THRESHOLD:
            return None
        body = b"".join(self._chunks(content))
        gzip = bool(s.AWS_S3_GZIP and self._compressible(content_type))
        # post-processing saves a file again in each pass: compressed once
        known = run.packs.get((hashlib.md5(body, usedforsecurity=False).digest(), gzip))
        run.wait(key, held=False)  # a held upload stays held: this one replaces it
        was = run.listed.get(key)
        replacing = key in run.deleted
        if (
            known is not None
            and was is not None
            and was[1] == known[0]
            and (replacing or not conditional)
        ):
            run.skipped += 1
            run.put(key, (was[0], was[1], was[2], known[1]))
            return name
        patterns = getattr(self, "_patterns", None)  # the names post-processing rewrites
        hold = bool(patterns) and matches_patterns(name, patterns or ())
        if was is None:
            # nothing to compare with: compressed by the upload's thread, beside this one
            params = self._put_params(name, self._max_age_for(name))
            params.setdefault("content_type", content_type)
            run.put(key, (len(body), "", time.time(), len(body)))
            run.upload(key, (key, params, body, conditional, gzip), hold=hold)
            return name
        raw = body
        gzip_size = None
        if gzip:
            packed = self._gzipped(ContentFile(body))
            if packed is not None:
                spool, gzip_size = packed
                with spool:
                    body = spool.read()
        params = self._upload_params(name, content_type, gzip_size)
        digest = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
        run.packs[(hashlib.md5(raw, usedforsecurity=False).digest(), gzip)] = (digest, gzip_size)
        if was is not None and was[1] == digest and (replacing or not conditional):
            run.skipped += 1
            run.put(key, (was[0], was[1], was[2], gzip_size))
            return name
        run.put(key, (len(body), digest, time.time(), gzip_size))
        run.upload(key, (key, params, body, conditional and not replacing), hold=hold)
        return name

    def _put_body(
        self,
        run: _Collecting,
        key: str,
        params: dict[str, Any],
        body: bytes,
        conditional: bool,
        gzip: bool = False,
    ) -> None:
        held = len(body)
        try:
            packed = self._gzipped_once(run, body) if gzip else None
            if packed is not None:
                body, size = packed
                metadata = {**params["metadata"], UNCOMPRESSED_SIZE_META_KEY: str(size)}
                params = {**params, "content_encoding": "gzip", "metadata": metadata}
                self._check_metadata_total(params["metadata"])
            with self._writer(key, params, len(body), if_none_match=conditional) as w:
                w.write(body)
        finally:
            run.window.release(held)

    def _gzipped_once(self, run: _Collecting, body: bytes) -> tuple[bytes, int] | None:
        """The body gzipped (None: that is not smaller), compressed once in a run for
        the same bytes: another upload thread with them waits for the first one's
        result (the same bytes out: the gzip is deterministic)."""
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        with run.gzip_lock:
            known = run.gzips.get(digest)
            if known is None:
                mine: Future[tuple[bytes, int] | None] = Future()
                run.gzips[digest] = mine
        if known is not None:
            return known.result()
        try:
            out = None
            packed = self._gzipped(ContentFile(body))
            if packed is not None:
                spool, size = packed
                with spool:
                    out = (spool.read(), size)
        except BaseException as e:
            mine.set_exception(e)
            with run.gzip_lock:
                del run.gzips[digest]
            raise
        mine.set_result(out)
        with run.gzip_lock:
            cost = len(out[0]) if out else 0
            if cost <= run.gzip_budget:
                run.gzip_budget -= cost
            else:
                del run.gzips[digest]  # over the budget: compressed again if seen again
        return out

    def meta(self, name: str) -> dict[str, Any]:
        """The object's headers in the shape of boto3's head_object."""
        meta = self._client.head_object(self._object_key(name))
        metadata = meta.get("Metadata")
        if (
            metadata
            and "uncompressed-size" in metadata
            and UNCOMPRESSED_SIZE_META_KEY not in metadata
        ):
            # Ceph RGW folds '_' to '-': the name this package wrote is the one shown
            metadata[UNCOMPRESSED_SIZE_META_KEY] = metadata.pop("uncompressed-size")
        if "LastModified" in meta:
            meta["LastModified"] = datetime.fromtimestamp(meta["LastModified"], dt_timezone.utc)
        return meta

    def delete(self, name: str) -> None:
        key = self._object_key(name)
        run = self._collecting_run()
        if run is not None:
            if key in run.held:  # never sent: nothing to send now either
                run.held_bytes -= len(run.held.pop(key)[2])
                if key not in run.sent:
                    run.hold_delete(key)
                    run.deleted.discard(key)
                    run.listed.pop(key, None)
                    return
                # the server keeps other bytes than the listing says now: no save
                # of any bytes may be skipped against it
                entry = run.listed[key]
                run.listed[key] = (entry[0], "", entry[2], None)
            run.wait(key)
            if key in run.listed:
                run.hold_delete(key)  # sent at the end, unless the name is saved again
                return
        self._client.delete_object(key)

    def exists(self, name: str) -> bool:
        # False only for not-found: anything else raises, or get_available_name
        # could overwrite a file that exists.
        name = _to_posix(name)
        key = self._get_key_name(name)
        run = self._collecting_run()
        if run is not None and not name.endswith("/") and key != self._prefix:
            return self._run_exists(run, key)
        if name.endswith("/") or key == self._prefix:  # "", "/", ".", "a/..": the root
            return self._dir_exists(name)
        if _SAVING.get() is not None:
            return self._name_taken(name, key)
        return self._client.exists(key) or self._dir_exists(name)

    def _name_taken(self, name: str, key: str) -> bool:
        """exists() for save()'s choice of a name, which is free as a rule: one
        listing of what starts with the key answers for the file and for the
        "directory" both, one request instead of a HEAD and a LIST. S3 lists in
        UTF-8 byte order (Python's order of str), so the key itself comes first,
        and key + "/" before anything greater. Only when the listing stops at a
        name between them (key-1, key.bak) does the "directory" need a LIST of its
        own. A key the client refuses (over 1,024 bytes) is refused before anything
        is sent."""
        if len(key.encode("utf-8")) > _KEY_MAX:
            return self._client.exists(key)  # raises ValueError, sends nothing
        page = self._client.list_objects(prefix=key, delimiter="/", max_keys=1)
        names = [c[0] for c in page["Contents"]] + page["CommonPrefixes"]
        below = key + "/"
        if any(n == key or n.startswith(below) for n in names):  # the file, or a "directory"
            return True
        if not page["IsTruncated"] or any(n > below for n in names):
            return False  # all of it listed, or listed past where key + "/" would be
        return self._dir_exists(name)

    def _dir_exists(self, name: str) -> bool:
        key = self._get_key_name(name)
        page = self._client.list_objects(prefix=key + "/" if key else None, max_keys=1)
        return bool(page["Contents"] or page["CommonPrefixes"])

    def _iter_pages(
        self, prefix: str | None, delimiter: str | None, relative: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The listing's pages (relative: names after the prefix only, as
        Client.list_objects gives them). Tokens are opaque, but a server whose
        listing does not advance (a token seen before, a page the same as the one
        before, a token that keeps growing, empty pages without end) would be
        followed for ever: that is an S3Error after a bounded number of requests."""
        token = None
        seen: set[int] = set()  # hashes: a bucket of many pages stays small here
        last: tuple[Any, ...] | None = None
        empty = 0
        while True:
            page = self._client.list_objects(
                prefix=prefix, delimiter=delimiter, continuation_token=token, relative=relative
            )
            contents, prefixes = page["Contents"], page["CommonPrefixes"]
            first, final = (contents[0], contents[-1]) if contents else (None, None)
            if not relative and contents:
                first, final = contents[0][0], contents[-1][0]
            here = (
                len(contents),
                len(prefixes),
                first,
                final,
                prefixes[0] if prefixes else None,
                prefixes[-1] if prefixes else None,
            )
            if last is not None and here == last and (contents or prefixes):
                raise self._listing_error(prefix, "returned the same page twice in a row")
            last = here
            empty = 0 if contents or prefixes else empty + 1
            token = page["NextContinuationToken"]
            if page["IsTruncated"]:
                if not token:
                    raise self._listing_error(
                        prefix, "is truncated but gives no NextContinuationToken"
                    )
                if len(token) > _LIST_TOKEN_MAX:
                    raise self._listing_error(
                        prefix,
                        f"gave a continuation token of "
                        f"{len(token)} characters (at most "
                        f"{_LIST_TOKEN_MAX} are followed)",
                    )
                if hash(token) in seen:
                    raise self._listing_error(
                        prefix, "gave a continuation token it gave before: it would never end"
                    )
                if empty > _LIST_EMPTY_PAGES_MAX:
                    raise self._listing_error(
                        prefix, f"gave {empty} empty pages in a row without an end"
                    )
                seen.add(hash(token))
            yield page
            if not page["IsTruncated"]:
                return

    def _listing_error(self, prefix: str | None, problem: str) -> OSError:
        """An S3Error like the C client's for a reply that cannot be right."""
        message = f"the listing of {prefix or '/'!r} {problem}"
        error = _s3.S3Error(f"InvalidReply (HTTP 200): {message}")
        error.code, error.status, error.message = "InvalidReply", 200, message
        error.request_id, error.bucket, error.key = None, self.settings.AWS_S3_BUCKET_NAME, prefix
        return error

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        key = self._get_key_name(path)
        base = key + "/" if key else ""
        dirs: list[str] = []
        files: list[str] = []
        for page in self._iter_pages(base or None, "/", relative=True):
            files += page["Contents"]
            dirs += page["CommonPrefixes"]
        return dirs, files

    def size(self, name: str) -> int:
        run = self._collecting_run()
        if run is not None:
            key = self._object_key(name)
            entry = run.listed.get(key)
            if key in run.deleted:
                raise FileNotFoundError(f"{name!r} is not in the bucket")
            if entry is not None and key in run.pending:
                return entry[3] if entry[3] is not None else entry[0]
            run.wait(key)
        meta = self.meta(name)
        if meta.get("ContentEncoding") == "gzip":
            for k in _UNCOMPRESSED_SIZE_KEYS:
                if k in meta["Metadata"]:
                    return int(meta["Metadata"][k])
        return int(meta["ContentLength"])

    def url(
        self,
        name: str | None,
        extra_params: dict[str, str] | None = None,
        client_method: str = "get_object",
        *,
        expire: int | None = None,
    ) -> str:
        """The URL of `name`: presigned for AWS_S3_MAX_AGE_SECONDS, or for `expire`
        seconds (1 to 604800) when given, as django-storages' url(name, expire=...);
        unsigned URLs (a public URL, AWS_S3_BUCKET_AUTH off) ignore it.

        At run time S3Storage.url is _s3.UrlMethod(this function): it builds the URL
        of a plain name in C, from the form _url_setup() chose, and calls this
        function for everything else."""
        if expire is not None and (
            isinstance(expire, bool) or not isinstance(expire, int) or not 1 <= expire <= 604800
        ):
            raise ValueError(
                f"expire must be a whole number of seconds from 1 to 604800 "
                f"(7 days, S3's longest), not {expire!r}"
            )
        return self._s3_url(name, extra_params, client_method, expire)

    def _s3_url(
        self,
        name: str | None,
        extra_params: dict[str, str] | None,
        client_method: str,
        expire: int | None = None,
    ) -> str:
        if name is None:
            raise ValueError("url() needs the name of a file, not None")
        s = self.settings
        if s.AWS_S3_PUBLIC_URL:
            if extra_params or client_method != "get_object":
                raise ValueError(
                    "Use of extra_params or client_method is not allowed with AWS_S3_PUBLIC_URL"
                )
            self._object_key(name)  # the same names as the other forms, or none
            url: str = urljoin(s.AWS_S3_PUBLIC_URL, filepath_to_uri(name))
            if self._cloudfront is None:
                return url
            return self._cloudfront_sign(url, self._cloudfront_expiry(expire))
        if not s.AWS_S3_BUCKET_AUTH:
            if extra_params or client_method != "get_object":
                raise ValueError(
                    "Use of extra_params or client_method is only allowed with AWS_S3_BUCKET_AUTH"
                )
            return self._client.url(self._object_key(name))
        method = _CLIENT_METHODS.get(client_method)
        if method is None:
            raise ValueError(
                f"client_method {client_method!r} is not supported: use one of "
                f"{', '.join(sorted(_CLIENT_METHODS))}"
            )
        query = None
        if extra_params:
            unknown = sorted(set(extra_params) - set(_EXTRA_PARAMS))
            if unknown:
                raise ValueError(
                    f"extra_params {', '.join(unknown)} not supported: use "
                    f"{', '.join(sorted(_EXTRA_PARAMS))}"
                )
            query = {_EXTRA_PARAMS[k]: str(v) for k, v in extra_params.items()}
            for k, v in extra_params.items():
                # S3 sends the response-* parameters back as headers of its reply
                if _CONTROL_CHARS.search(str(v)):
                    raise ValueError(f"extra_params[{k!r}] holds a control character")
        expires = int(s.AWS_S3_MAX_AGE_SECONDS) if expire is None else expire
        return self._client.presign(method, self._object_key(name), expires=expires, query=query)

    def _cloudfront_expiry(self, expire: int | None) -> int:
        return int(time.time()) + (
            int(self.settings.AWS_S3_MAX_AGE_SECONDS) if expire is None else expire
        )

    def _cloudfront_sign(self, url: str, expires_at: int, policy: str | None = None) -> str:
        """url with CloudFront's signature: of the canned policy (Expires=), or of
        `policy` (Policy=)."""
        assert self._cloudfront is not None
        key_id, key = self._cloudfront
        canned = policy is None
        if policy is None:  # the canned policy, exactly as CloudFront rebuilds it
            policy = (
                f'{{"Statement":[{{"Resource":{json.dumps(url)},"Condition":'
                f'{{"DateLessThan":{{"AWS:EpochTime":{expires_at}}}}}}}]}}'
            )
        signature = _cloudfront_b64(key.sign_sha1(policy.encode()))
        query = f"Expires={expires_at}" if canned else f"Policy={_cloudfront_b64(policy.encode())}"
        return (
            f"{url}{'&' if '?' in url else '?'}{query}&Signature={signature}&Key-Pair-Id={key_id}"
        )

    def cloudfront_url(
        self,
        name: str,
        *,
        expire: int | None = None,
        not_before: datetime | None = None,
        source_ip: str | None = None,
        resource: str | None = None,
    ) -> str:
        """A CloudFront signed URL of `name` with a custom policy: valid for `expire`
        seconds (AWS_S3_MAX_AGE_SECONDS), not before `not_before`, from `source_ip`
        (an address or CIDR range) only, for `resource` (a URL with * wildcards: one
        signature for many files; default this file's URL). url() signs the canned
        policy (expiry alone)."""
        s = self.settings
        if self._cloudfront is None:
            raise ValueError(
                "cloudfront_url() needs AWS_S3_CLOUDFRONT_KEY_ID and AWS_S3_CLOUDFRONT_KEY"
            )
        if expire is not None and (
            isinstance(expire, bool) or not isinstance(expire, int) or expire < 1
        ):
            raise ValueError(f"expire must be a whole number of seconds above 0, not {expire!r}")
        self._object_key(name)
        url = urljoin(s.AWS_S3_PUBLIC_URL, filepath_to_uri(name))
        expires_at = self._cloudfront_expiry(expire)
        condition: dict[str, Any] = {"DateLessThan": {"AWS:EpochTime": expires_at}}
        if not_before is not None:
            if not isinstance(not_before, datetime) or not_before.tzinfo is None:
                raise ValueError("not_before must be an aware datetime")
            condition["DateGreaterThan"] = {"AWS:EpochTime": int(not_before.timestamp())}
        if source_ip is not None:
            try:
                network = ipaddress.ip_network(source_ip, strict=False)
            except (TypeError, ValueError):
                raise ValueError(
                    f"source_ip must be an IP address or a CIDR range, not {source_ip!r}"
                ) from None
            condition["IpAddress"] = {"AWS:SourceIp": str(network)}
        if resource is not None and (
            not isinstance(resource, str) or not resource.isprintable() or len(resource) > 4096
        ):
            raise ValueError("resource must be a printable URL (with * wildcards)")
        policy = json.dumps(
            {"Statement": [{"Resource": resource or url, "Condition": condition}]},
            separators=(",", ":"),
        )
        return self._cloudfront_sign(url, expires_at, policy)

    # ---- times -------------------------------------------------------------------

    def _last_modified(self, name: str) -> datetime:
        run = self._collecting_run()
        if run is not None:
            key = self._object_key(name)
            entry = run.listed.get(key)
            if entry is None or key in run.deleted:
                raise FileNotFoundError(f"{name!r} is not in the bucket")
            return datetime.fromtimestamp(entry[2], dt_timezone.utc)
        modified: datetime = self.meta(name)["LastModified"]
        return modified

    def modified_time(self, name: str) -> datetime:
        """Naive UTC, as django-s3-storage always returned."""
        return self._last_modified(name).replace(tzinfo=None)

    created_time = accessed_time = modified_time

    def get_modified_time(self, name: str) -> datetime:
        stamp = self._last_modified(name)
        return stamp if settings.USE_TZ else timezone.make_naive(stamp)

    get_created_time = get_accessed_time = get_modified_time

    # ---- names for new files, copies ------------------------------------------------

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        name = _to_posix(name)
        if not self.settings.AWS_S3_FILE_OVERWRITE:
            return super().get_available_name(name, max_length)
        if max_length is None or len(name) <= max_length:
            return name
        # the name as it is would not fit: shorten the file's root, keep the extension
        dir_name, file_name = posixpath.split(name)
        root, ext = posixpath.splitext(file_name)
        cut = len(name) - max_length
        if cut >= len(root):
            raise SuspiciousFileOperation(
                f"Storage cannot fit {name!r} in {max_length} characters; use a shorter name."
            )
        return posixpath.join(dir_name, root[:-cut] + ext)

    def copy(self, src: str, dst: str) -> str:
        """Copies src to dst inside the bucket (S3 CopyObject: no download). The
        copy gets AWS_S3_ACL's ACL, as a saved file would (S3 copies no ACL)."""
        src_key, dst_key = self._object_key(src), self._object_key(dst)
        run = self._collecting_run()
        if run is not None:
            run.wait(src_key)  # its upload first (sent now if held back)
            if src_key in run.deleted:
                raise FileNotFoundError(f"{src!r} is not in the bucket")
            run.wait(dst_key)  # an upload under way would land after the copy
        self._client.copy_object(src_key, dst_key, acl=self._acl())
        if run is not None:
            entry = run.listed.get(src_key, (0, "", 0.0, None))
            run.copied.discard(dst_key)
            run.put(dst_key, (entry[0], "", time.time(), entry[3]))
            run.sent.add(dst_key)
        return dst

    def rename(self, src: str, dst: str) -> str:
        self.copy(src, dst)
        self.delete(src)
        return dst

    # ---- re-syncing headers ---------------------------------------------------------

    def sync_meta_names(self, prefix: str = "") -> Iterator[str]:
        """The names sync_meta_iter() rewrites, in listing order: every object's, or
        those that start with `prefix` (a plain string prefix, as S3 matches it)."""
        if (
            not isinstance(prefix, str)
            or len(prefix) > 1024
            or not prefix.isprintable()
            or prefix.startswith("/")
        ):
            raise ValueError(
                f"prefix must be a printable name prefix of at most 1,024 "
                f"characters, not starting with '/': not {prefix!r}"
            )
        base = self._prefix + "/" if self._prefix else ""
        for page in self._iter_pages(base + prefix or None, None):
            for entry in page["Contents"]:
                name = entry[0][len(base) :]
                if name:
                    yield name

    def _sync_one(self, name: str) -> bool:
        """One object's headers rewritten (a HEAD, then a CopyObject onto itself);
        False when it is gone since the listing. The key as listed: a stored key
        may hold what names given to save() may not (a control character, "//")."""
        key = f"{self._prefix}/{name}" if self._prefix else name
        try:
            obj = self._client.head_object(key)
        except FileNotFoundError:
            return False
        params = self._put_params(name, self._max_age_for(name))
        encoding = obj.get("ContentEncoding")
        if encoding:
            params["content_encoding"] = encoding
            for k in _UNCOMPRESSED_SIZE_KEYS:
                if k in obj["Metadata"]:
                    params["metadata"][UNCOMPRESSED_SIZE_META_KEY] = obj["Metadata"][k]
                    break
        params.setdefault("content_type", obj.get("ContentType") or self._content_type(name))
        if "x-amz-tagging" in params.get("headers", {}):
            params["headers"]["x-amz-tagging-directive"] = "REPLACE"  # else the old tags
        self._client.copy_object(key, key, metadata_directive="REPLACE", **params)
        return True

    def sync_meta_iter(
        self,
        prefix: str = "",
        *,
        names: Iterable[str] | None = None,
        dry_run: bool = False,
        errors: list[tuple[str, BaseException]] | None = None,
    ) -> Iterator[str]:
        """Rewrites the headers, ACL, storage class, encryption and metadata of every
        object (or of `names`, or of those under `prefix`) from the current settings:
        a HEAD and a CopyObject each, AWS_S3_MAX_POOL_CONNECTIONS objects at a time
        (the C client releases the GIL while it waits). Yields the names rewritten,
        in listing order. dry_run: sends nothing but the listing, and yields the
        names it would rewrite. errors: failures are added to it as (name, error)
        and the run goes on; without it, the first failure is raised."""
        todo = self.sync_meta_names(prefix) if names is None else iter(names)
        if dry_run:
            yield from todo
            return
        workers = max(1, int(self.settings.AWS_S3_MAX_POOL_CONNECTIONS))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="s3-sync-meta")
        window: deque[tuple[str, Future[bool]]] = deque()
        try:
            for name in itertools.chain(todo, [None]):
                if name is not None:
                    window.append((name, pool.submit(self._sync_one, name)))
                # the names in order; at most 2 x workers objects asked for ahead
                while window and (name is None or len(window) >= 2 * workers):
                    done, future = window.popleft()
                    try:
                        rewritten = future.result()
                    except Exception as e:
                        if errors is None:
                            raise
                        errors.append((done, e))
                        continue
                    if rewritten:
                        yield done
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def sync_meta(self) -> None:
        for _ in self.sync_meta_iter():
            pass


# S3Storage.url as a C method descriptor: storage.url(name) of a plain name is one C
# call (templates call it once per file); any other call runs the Python method above,
# its __wrapped__
S3Storage.url = _s3.UrlMethod(S3Storage.__dict__["url"])  # type: ignore[method-assign,assignment]


class StaticS3Storage(S3Storage):
    """S3 storage for static files: settings with the _STATIC suffix, public by default."""

    # collectstatic uploads that many files at a time (Collectfasta: 20 threads);
    # connections are opened when needed, so url() alone opens none
    default_s3_settings = {
        **S3Storage.default_s3_settings,
        "AWS_S3_BUCKET_AUTH": False,
        "AWS_S3_MAX_POOL_CONNECTIONS": 32,
    }
    s3_settings_suffix = "_STATIC"


class ManifestStaticS3Storage(ManifestFilesMixin, StaticS3Storage):  # type: ignore[misc]
    """Static storage with hashed names and a staticfiles.json manifest. Hashed
    files never change, so they are cached for AWS_S3_MAX_AGE_SECONDS_CACHED_STATIC
    (and the manifest, which collectstatic saves with them, as 0.15 does); the
    un-hashed copies keep AWS_S3_MAX_AGE_SECONDS_STATIC."""

    default_s3_settings = {
        **StaticS3Storage.default_s3_settings,
        "AWS_S3_MAX_AGE_SECONDS_CACHED": 60 * 60 * 24 * 365,
    }
    _hashing = False
    _known_hashed: frozenset[str] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        # Django's mixins would hold the keyword arguments (secrets too) in plain
        # dicts that a traceback shows: the S3 ones go around them, masked.
        kwargs = _MaskedKwargs(kwargs)
        own = {k: kwargs.pop(k) for k in ("manifest_location", "manifest_storage") if k in kwargs}
        self._s3_kwargs = kwargs
        super().__init__(**own)

    def _max_age_for(self, name: str) -> int | None:
        # post_process saves only hashed names and the manifest, all with the long max
        # age, as 0.15 does; sync_meta asks the manifest which names are hashed (the
        # manifest itself then gets the short one, as in 0.15)
        if self._hashing or (name != self.manifest_name and name in self._known_hashed):
            return int(self.settings.AWS_S3_MAX_AGE_SECONDS_CACHED)
        return None

    def save_manifest(self) -> None:
        run = self._collecting_run()
        if run is not None:
            # after the files it names, as Django's own command (which stops at the
            # first failed save) writes it: a failed upload leaves the old manifest
            run.flush()
        super().save_manifest()

    def post_process(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self._hashing = True
        run = self._collecting_run()
        if run is not None and args and isinstance(args[0], dict):
            run.sources = {_to_posix(k): v for k, v in args[0].items()}
            run.holding = True
        try:
            yield from super().post_process(*args, **kwargs)
        finally:
            self._hashing = False
            if run is not None:
                run.release()

    def sync_meta_iter(self, prefix: str = "", **kwargs: Any) -> Iterator[str]:
        self._known_hashed = frozenset(self.hashed_files.values())
        try:
            yield from super().sync_meta_iter(prefix, **kwargs)
        finally:
            self._known_hashed = frozenset()
