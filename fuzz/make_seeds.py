"""Writes the seed corpus of each fuzz target (fuzz/corpus/<target>/): real S3
replies, gzip members, header blocks, credential files. Run from the repository
root; the files are committed, this script says where they came from."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>media/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><Contents><Key>media/a.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>media/b%20c+d.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"9b2cf535f27731c974343645a3985328-2"</ETag><Size>10485760</Size><StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>media/sub/</Prefix></CommonPrefixes><EncodingType>url</EncodingType><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"""
LIST_EMPTY = b"""<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"""
LIST_CDATA = b"""<ListBucketResult><Contents><Key><![CDATA[x&y]]></Key><Size>12</Size></Contents><IsTruncated>false</IsTruncated></ListBucketResult>"""
ERROR = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>media/x</Key><RequestId>4442587FB7D0A2F9</RequestId><HostId>abc=</HostId></Error>"""
REDIRECT = b"""<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>bucket.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>bucket</Bucket><Region>eu-west-1</Region><RequestId>1</RequestId></Error>"""
COPY = b"""<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><LastModified>2009-10-28T22:32:00.000Z</LastModified><ETag>"9b2cf535f27731c974343645a3985328"</ETag></CopyObjectResult>"""
COMPLETE = b"""<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://b.s3.amazonaws.com/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>"""
COMPLETE_ERR = b"""      \n<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId></Error>"""
INITIATE = b"""<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></InitiateMultipartUploadResult>"""
DTD = b"""<?xml version="1.0"?><!DOCTYPE Error [<!ENTITY a "aaaa">]><Error><Code>&a;</Code></Error>"""

HEADERS = [
    b"HTTP/1.1 200 OK\r\nx-amz-id-2: ef8yU9AS1ed4OpIszj7UDNEHGran\r\nx-amz-request-id: 318BC8BC143432E5\r\nDate: Wed, 28 Oct 2009 22:32:00 GMT\r\nLast-Modified: Wed, 12 Oct 2009 17:50:00 GMT\r\nETag: \"fba9dede5f27731c9771645a39863328\"\r\nContent-Length: 434234\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nx-amz-meta-uncompressed_size: 1000000\r\nConnection: keep-alive\r\nServer: AmazonS3\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\nContent-Range: bytes 21010-47021/47022\r\nContent-Length: 26012\r\nETag: \"abc\"\r\n\r\n",
    b"HTTP/1.1 503 Slow Down\r\nx-amz-retry-after: 1500\r\nContent-Type: application/xml\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\nx-amz-server-side-encryption: aws:kms\r\n\r\n",
    b"HTTP/2 200 \r\ncontent-length: 5\r\n\r\n",
]

CONFIG = b"""[default]
region = eu-west-1
s3 =
    addressing_style = path
[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = default
role_session_name = session
duration_seconds = 3600
credential_process = /usr/bin/creds --profile dev
web_identity_token_file = ~/.aws/token
"""
CREDENTIALS = b"""# a comment
[default]
aws_access_key_id = AKIDEXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
aws_session_token = FQoGZXIvYXdzEXAMPLE
; another
[other]
aws_access_key_id: AKIDOTHER
"""
PROCESS = b'{"Version": 1, "AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "SessionToken": "FQoGZXIvYXdzE\\u00e9\\n", "Expiration": "2030-01-02T03:04:05Z"}'
CONTAINER = b'{"AccessKeyId": "ASIAEXAMPLE", "Expiration": "2030-01-02T03:04:05.123+01:00", "RoleArn": "arn", "SecretAccessKey": "secret", "Token": "token"}'
IMDS = b'{\n  "Code" : "Success",\n  "LastUpdated" : "2024-01-02T03:04:05Z",\n  "Type" : "AWS-HMAC",\n  "AccessKeyId" : "ASIAEXAMPLE",\n  "SecretAccessKey" : "secret",\n  "Token" : "token",\n  "Expiration" : "2030-01-02T03:04:05Z"\n}\n'
STS = b"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret</SecretAccessKey><SessionToken>token</SessionToken><Expiration>2030-01-02T03:04:05Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"""
STS_ERR = b"""<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>1</RequestId></ErrorResponse>"""

SIGV4 = [
    b"GET\0https://examplebucket.s3.amazonaws.com/test.txt\0e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\0Host\0examplebucket.s3.amazonaws.com\0Range\0bytes=0-9\0x-amz-date\020130524T000000Z",
    b"PUT\0http://127.0.0.1:9000/bucket/media/a%20b/%E2%82%AC+~.txt?uploadId=abc&partNumber=3\0UNSIGNED-PAYLOAD\0Content-Type\0 text/plain ;  charset=utf-8 \0X-Amz-Meta-A\0one\0x-amz-meta-a\0two",
    b"GET\0https://user@[::1]:443/b?list-type=2&prefix=a%2Fb&continuation-token=1ueGcx%2B%3D&encoding-type=url#frag\0UNSIGNED-PAYLOAD",
    b"POST\0https://sts.amazonaws.com/\0abc\0content-type\0application/x-www-form-urlencoded",
]


def main() -> None:
    root = Path("fuzz/corpus")
    seeds: dict[str, list[bytes]] = {
        "xml_list": [b"\xff" + LIST, b"\x07" + LIST, b"\x00" + LIST_EMPTY, b"\x03" + LIST_CDATA,
                     b"\xff" + DTD],
        "xml_reply": [ERROR, REDIRECT, COPY, COMPLETE, COMPLETE_ERR, INITIATE, DTD],
        "gzip": [b"\x05" + gzip.compress(b"hello world\n" * 20, mtime=0),
                 b"\x10" + gzip.compress(b"a", mtime=0) + gzip.compress(b"b", mtime=0),
                 b"\x3c" + gzip.compress(b'{"k": [1, 2, 3]}', compresslevel=1, mtime=0),
                 b"\x01" + gzip.compress(b"", mtime=0)[:-3]],
        "sigv4": SIGV4,
        "headers": HEADERS,
        "credentials": [b"\x00" + CONFIG, b"\x01" + CREDENTIALS, b"\x02" + PROCESS,
                        b"\x03" + CONTAINER, b"\x04" + IMDS, b"\x05" + STS, b"\x05" + STS_ERR,
                        b"\x062024-01-02T03:04:05.5-0130", b"\x07AccessDenied wJalrXUtnFEMI/K7MDENG",
                        b"\x07my-role_1@x"],
    }
    for target, items in seeds.items():
        d = root / target
        d.mkdir(parents=True, exist_ok=True)
        for item in items:
            (d / hashlib.sha1(item).hexdigest()).write_bytes(item)


if __name__ == "__main__":
    main()
