"""url()'s one-C-call path (Client.storage_url) gives byte for byte what
storage.py's own path (_url) gives, for every form and a set of hard names."""
from __future__ import annotations

import copy
import gc
import inspect
import pickle
import weakref
from typing import Any

import pytest
from django.test import override_settings

from conftest import STATIC_BUCKET, S3Target
from django_s3_storage import _s3
from django_s3_storage.storage import ManifestStaticS3Storage, S3Storage

NAMES = ["a.txt", "dir/sub/file name.jpg", "plus+sign~tilde.css", "caf\u00e9/\u65e5\u672c.png",
         "emoji\U0001f600.gif", "q?u#e&r=y;x:y@z", "bang!(star)*'quote'", "back\\slash.txt",
         "%41percent", "a/.hidden", ".dot", "x" * 1030, "tab\there", "a//b", "dir/"]
ENDPOINT = "http://127.0.0.1:9"


BASE = dict(aws_s3_bucket_name="url-bucket", aws_s3_endpoint_url=ENDPOINT,
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret-example",
            aws_region="us-east-1")


def _storages() -> list[S3Storage]:
    base = BASE
    return [S3Storage(**base), S3Storage(**base, aws_s3_key_prefix="pre fix/\u00e9"),
            S3Storage(**base, aws_s3_bucket_auth=False),
            S3Storage(**base, aws_s3_bucket_auth=False, aws_s3_key_prefix="p+q"),
            S3Storage(**base, aws_s3_public_url="https://cdn.example.com/static/"),
            S3Storage(**base, aws_s3_public_url="https://cdn.example.com/a//b/c?x=1#f"),
            S3Storage(**base, aws_s3_public_url="/media/"),
            S3Storage(**base, aws_s3_max_age_seconds=60),
            S3Storage(**base, aws_s3_public_endpoint_url="https://files.example.com:8443")]


def _both(st: S3Storage, name: str) -> tuple[object, object]:
    def one(f):  # type: ignore[no-untyped-def]
        try:
            return f()
        except Exception as e:
            return (type(e), str(e))
    for _ in range(3):   # a presigned pair must be signed in the same second
        fast = one(lambda: st.url(name))
        slow = one(lambda: st._s3_url(name, None, "get_object"))
        if fast == slow:
            break
    return fast, slow


@pytest.mark.parametrize("index", range(9))
def test_url_forms_unchanged(index: int) -> None:
    st = _storages()[index]
    taken = 0
    for name in NAMES:
        fast, slow = _both(st, name)
        assert fast == slow, name
        taken += st._client.storage_url(name, None, "get_object") is not None
    assert taken >= 6   # the C path answered for the plain names


def test_url_extra_params_and_methods_take_the_python_path() -> None:
    st = _storages()[0]
    url = st.url("a.txt", {"ResponseContentDisposition": "attachment"})
    assert "response-content-disposition=attachment" in url and "X-Amz-Signature=" in url
    assert st._client.storage_url("a.txt", {"ResponseContentDisposition": "x"}, "get_object") is None
    assert st.url("a.txt", client_method="put_object").count("X-Amz-Signature=") == 1
    with pytest.raises(ValueError):
        st.url("a.txt", client_method="nope")


def test_url_follows_setting_changes() -> None:
    with override_settings(AWS_S3_BUCKET_NAME="one", AWS_S3_ENDPOINT_URL=ENDPOINT,
                           AWS_S3_BUCKET_AUTH=False):
        st = S3Storage()
        assert st.url("a b") == f"{ENDPOINT}/one/a%20b"
        with override_settings(AWS_S3_PUBLIC_URL="https://cdn.example.com/s/"):
            assert st.url("a b") == "https://cdn.example.com/s/a%20b"
        assert st.url("a b") == f"{ENDPOINT}/one/a%20b"


def test_url_setup_refuses_nul_and_counts_the_prefix_unescaped() -> None:
    st = _storages()[1]      # prefix "pre fix/é": 10 bytes, 16 escaped
    client = st._client
    with pytest.raises(ValueError, match="NUL"):
        client.url_setup(2, "a\0b", "", 0)
    with pytest.raises(ValueError, match="NUL"):
        client.url_setup(1, "", "https://cdn.example.com/\0", 0)
    prefix = "pre fix/\u00e9"
    client.url_setup(2, prefix, "", 0)
    room = 1024 - len(prefix.encode()) - 1
    url = client.storage_url("x" * room, None, "get_object")
    assert url is not None and url.endswith("/pre%20fix/%C3%A9/" + "x" * room)
    assert client.storage_url("x" * (room + 1), None, "get_object") is None


def test_url_is_one_c_call_that_hands_every_other_call_to_the_python_method() -> None:
    assert type(S3Storage.__dict__["url"]) is _s3.UrlMethod   # no Python frame for plain names
    assert "expire" in inspect.signature(S3Storage.url).parameters
    assert "presigned" in (S3Storage.url.__doc__ or "")
    plain, presigned = S3Storage(**BASE, aws_s3_bucket_auth=False), _storages()[0]
    assert plain.url("a b") == S3Storage.url(plain, "a b") == f"{ENDPOINT}/url-bucket/a%20b"
    # keywords, a name the C path does not take, other methods, expire, bad calls:
    # the Python method's own answers
    assert plain.url(name="a b") == plain.url("a b", None, "get_object") == plain.url("a b")
    assert plain.url("a//b") == S3Storage.url(plain, "a//b") == f"{ENDPOINT}/url-bucket/a/b"
    assert "X-Amz-Expires=60&" in presigned.url("a", expire=60)
    assert "X-Amz-Expires=60&" not in presigned.url("a")
    with pytest.raises(ValueError, match="not None"):
        plain.url(None)
    with pytest.raises(ValueError, match="expire"):
        presigned.url("a", expire=0)
    with pytest.raises(TypeError):
        plain.url()
    with pytest.raises(TypeError):
        plain.url("a", None, "get_object", 60)
    with pytest.raises(AttributeError):
        S3Storage.url(object(), "a")   # not a storage: an error, as from the Python method
    bound = plain.url   # a bound method, as Django's LazyObject takes it
    assert bound("a b") == f"{ENDPOINT}/url-bucket/a%20b" and bound.__self__ is plain


def test_a_storage_made_for_one_url_is_freed_at_once() -> None:
    assert S3Storage(**BASE, aws_s3_bucket_auth=False).url("a b").endswith("/a%20b")
    st = S3Storage(**BASE, aws_s3_bucket_auth=False)
    st.url("a b")
    gone = weakref.ref(st)
    gc.disable()   # no cycle through the storage: freed by its last reference
    try:
        del st
        assert gone() is None
    finally:
        gc.enable()


def test_url_reads_as_the_function_it_stands_for() -> None:
    """S3Storage.url, a C descriptor, has the function's name, module and
    annotations: a bound url() pickles (by its __name__, as any method), repr()
    names it, and the descriptor itself pickles and copies as the global it is."""
    storage = S3Storage(**BASE, aws_s3_bucket_auth=False)
    method = S3Storage.url
    assert (method.__name__, method.__qualname__) == ("url", "S3Storage.url")
    assert method.__module__ == "django_s3_storage.storage"
    assert "name" in method.__annotations__ and "expire" in method.__annotations__
    assert repr(storage.url).startswith("<bound method S3Storage.url of ")
    assert pickle.loads(pickle.dumps(method)) is method
    assert copy.copy(method) is method and copy.deepcopy(method) is method
    again = pickle.loads(pickle.dumps(storage.url))
    assert again("a b.txt") == storage.url("a b.txt") == ENDPOINT + "/url-bucket/a%20b.txt"
    with pytest.raises(AttributeError):
        method.no_such_attribute  # noqa: B018


def test_a_subclass_keeps_its_own_url() -> None:
    class Mine(S3Storage):
        def url(self, name: Any, *args: Any, **kwargs: Any) -> str:
            return "mine:" + super().url(name, *args, **kwargs)

    st = Mine(**BASE, aws_s3_bucket_auth=False)
    assert st.url("a b") == f"mine:{ENDPOINT}/url-bucket/a%20b"
    assert st.url("a//b") == f"mine:{ENDPOINT}/url-bucket/a/b"


def test_the_manifest_storage_reaches_s3_url_for_names_the_c_path_leaves(s3: S3Target) -> None:
    # HashedFilesMixin has a _url() of its own: S3Storage's slow path must not land there
    with override_settings(DEBUG=True):
        st = ManifestStaticS3Storage(aws_s3_bucket_name=STATIC_BUCKET, aws_s3_key_prefix="p")
        base = f"{s3.endpoint}/{STATIC_BUCKET}/p/"
        assert st.url("css/a.css") == base + "css/a.css"
        assert st.url("css//a.css") == base + "css/a.css"
        assert st.url(".well-known/a.txt") == base + ".well-known/a.txt"
