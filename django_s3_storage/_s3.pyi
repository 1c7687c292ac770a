"""Types of the C extension django_s3_storage._s3."""

from collections.abc import Callable
from types import TracebackType
from typing import Any, BinaryIO, TypedDict, overload

from typing_extensions import Self, Unpack, final

curl_version: str  # libcurl's full version string, made on first use
libcurl_version: str  # "libcurl/7.88.1"

class S3Error(OSError):
    code: str | None
    status: int
    message: str | None
    request_id: str | None
    bucket: str | None
    key: str | None

class S3NotFoundError(S3Error, FileNotFoundError): ...

_ListEntry = tuple[str, int, str, float, str]  # key, size, etag, last modified (epoch), class

class _ObjectHeaders(TypedDict, total=False):
    """The object headers put_object and writer take as keywords."""

    content_type: str | None
    content_encoding: str | None
    cache_control: str | None
    content_disposition: str | None
    content_language: str | None
    acl: str | None
    storage_class: str | None
    server_side_encryption: str | None
    sse_kms_key_id: str | None
    metadata: dict[str, str] | None
    headers: dict[str, str] | None  # more headers (Expires, x-amz-tagging, ...)

@final
class Client:
    bucket: str
    region: str
    endpoint_url: str
    addressing_style: str
    user_agent: str
    connections_opened: int
    @property
    def log_enabled(self) -> bool: ...
    def set_log(self, fn: Callable[..., object] | None, /) -> None: ...
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = ...,
        region: str | None = ...,
        access_key: str | None = ...,
        secret_key: str | None = ...,
        session_token: str | None = ...,
        addressing_style: str = ...,
        connect_timeout: float = ...,
        read_timeout: float = ...,
        max_connections: int = ...,
        max_attempts: int = ...,
        verify: bool = ...,
        ca_bundle: str | None = ...,
        profile: str | None = ...,
        anonymous: bool = ...,
        proxy: str | None = ...,
        user_agent: str | None = ...,
        public_endpoint_url: str | None = ...,
        system_ca_bundle: str | None = ...,
    ) -> None: ...
    def exists(self, key: str) -> bool: ...
    def head_object(self, key: str) -> dict[str, Any]: ...
    def get_object(
        self,
        key: str,
        *,
        start: int | None = ...,
        end: int | None = ...,
        decompress: bool = ...,
        spool_max: int = ...,
        spool_dir: str | None = ...,
    ) -> tuple[bytes | BinaryIO, dict[str, Any]]: ...
    def reader(
        self, key: str, *, decompress: bool = ..., buffer_size: int = ..., verify: bool = ...
    ) -> Reader: ...
    def put_object(
        self,
        key: str,
        body: bytes | bytearray | memoryview,
        **headers: Unpack[_ObjectHeaders],
    ) -> dict[str, Any]: ...
    def copy_object(self, source_key: str, key: str, **kwargs: Any) -> dict[str, Any]: ...
    def delete_object(self, key: str) -> None: ...
    def list_objects(
        self,
        prefix: str | None = ...,
        *,
        delimiter: str | None = ...,
        continuation_token: str | None = ...,
        start_after: str | None = ...,
        max_keys: int = ...,
        relative: bool = ...,
    ) -> dict[str, Any]: ...
    def writer(
        self,
        key: str,
        *,
        part_size: int = ...,
        threshold: int = ...,
        max_inflight: int = ...,
        size_hint: int = ...,
        if_none_match: bool = ...,
        **headers: Unpack[_ObjectHeaders],
    ) -> Writer: ...
    def url(self, key: str) -> str: ...
    def url_setup(self, mode: int, prefix: str, public_base: str, expires: int, /) -> None: ...
    def storage_url(
        self, name: object, extra_params: object, client_method: object, /
    ) -> str | None: ...
    def presign(
        self,
        method: str,
        key: str,
        *,
        expires: int = ...,
        query: dict[str, str] | None = ...,
        timestamp: str | None = ...,
    ) -> str: ...
    def _follow_region(self, region: str) -> None: ...
    @staticmethod
    def _backoff_delay(
        retry: int, throttled: bool, jitter: float, retry_after: float = ...
    ) -> float: ...

@final
class Reader:
    """A raw binary stream over one object (Client.reader()); not thread-safe."""

    closed: bool
    meta: dict[str, Any]
    size: int | None
    content_encoding: str | None
    decompressing: bool
    bytes_received: int
    requests: int
    def read(self, n: int = ..., /) -> bytes: ...
    def readall(self) -> bytes: ...
    def readinto(self, b: bytearray | memoryview, /) -> int: ...
    def readable(self) -> bool: ...
    def seekable(self) -> bool: ...
    def writable(self) -> bool: ...
    def isatty(self) -> bool: ...
    def fileno(self) -> int: ...
    def flush(self) -> None: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def tell(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

@final
class Writer:
    """Made by Client.writer(); not instantiable."""

    closed: bool
    bytes_written: int
    upload_id: str | None
    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def close(self) -> dict[str, Any] | None: ...  # {"ETag", "Parts", "Size"}; None if closed
    def abort(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @staticmethod
    def _part_size_for(part_size: int, size_hint: int, number: int) -> int: ...

def presign_v4(
    method: str,
    url: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    expires: int,
    timestamp: str,
    session_token: str | None = ...,
    service: str = ...,
) -> str: ...
def sign_v4(
    method: str,
    url: str,
    headers: dict[str, str],
    payload_hash: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    timestamp: str,
    session_token: str | None = ...,
    service: str = ...,
) -> dict[str, str]: ...
def _sigv4_stages(
    method: str,
    url: str,
    headers: dict[str, str],
    payload_hash: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    timestamp: str,
    session_token: str | None = ...,
    service: str = ...,
) -> tuple[str, str, str]: ...
def gzip_compress(data: bytes | bytearray | memoryview, level: int = ...) -> bytes: ...
def gzip_decompress(data: bytes | bytearray | memoryview) -> bytes: ...

@final
class SigningKey:
    """An RSA private key loaded once from PEM, for CloudFront's signed URLs."""
    def __init__(self, pem: bytes) -> None: ...
    def sign_sha1(self, data: bytes) -> bytes: ...

@final
class UrlMethod:
    """S3Storage.url as a method descriptor: the URL of a plain name from the
    storage's Client in one C call; every other call goes to the function given."""

    __wrapped__: Callable[..., str]
    def __init__(self, fallback: Callable[..., str], /) -> None: ...
    @overload
    def __get__(self, obj: None, objtype: type | None = ..., /) -> Self: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = ..., /) -> Callable[..., str]: ...
    def __call__(self, storage: object, /, *args: Any, **kwargs: Any) -> str: ...
