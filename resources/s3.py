"""The lake and the landing zone under S3 prefixes, through dagster-aws's S3 resource.

Kept apart from `lake` and `landing` because importing dagster-aws costs every process that
loads the code location about 2.5 s (its package imports Dagster's test utilities); only the
S3 profile imports this module.
"""

from __future__ import annotations

from typing import Any

from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from resources.lake import Lake, check_key
from resources.landing import LandingZone


class S3Lake(Lake):
    """The lake under an S3 prefix, through dagster-aws's S3 resource (one PUT is atomic)."""

    s3: S3Resource
    bucket: str
    prefix: str = "lake"
    _client: object = PrivateAttr(default=None)

    def _s3(self) -> Any:  # boto3 clients are untyped
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def _key(self, key: str, *, allow_empty: bool = False) -> str:
        check_key(key, allow_empty=allow_empty)
        return f"{self.prefix.strip('/')}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._s3().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def move(self, source: str, target: str) -> bool:
        # S3 has no rename: a server-side copy (atomic for the target) then a delete.
        client = self._s3()
        try:
            client.copy_object(
                Bucket=self.bucket,
                Key=self._key(target),
                CopySource={"Bucket": self.bucket, "Key": self._key(source)},
            )
        except client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        client.delete_object(Bucket=self.bucket, Key=self._key(source))
        return True

    def modified_at(self, key: str) -> float:
        head = self._s3().head_object(Bucket=self.bucket, Key=self._key(key))
        return float(head["LastModified"].timestamp())

    def get(self, key: str) -> bytes:
        client = self._s3()
        try:
            response = client.get_object(Bucket=self.bucket, Key=self._key(key))
        except client.exceptions.NoSuchKey as error:
            raise FileNotFoundError(f"{self.uri(key)}: no such object") from error
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        response = self._s3().list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return any(item["Key"] == self._key(key) for item in response.get("Contents", []))

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3().get_paginator("list_objects_v2")
        root = self._key("", allow_empty=True)
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=self._key(prefix, allow_empty=True)
        ):
            keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def delete(self, key: str) -> None:
        self._s3().delete_object(Bucket=self.bucket, Key=self._key(key))


class S3LandingZone(LandingZone):
    """An S3 prefix, through dagster-aws's S3 resource; the fingerprint is the object's ETag.

    An object becomes visible only once its upload (a multipart one too) is complete, so no
    settle time is needed unless a tool rewrites an object in several steps.
    """

    s3: S3Resource
    bucket: str
    prefix: str = "landing"
    _client: object = PrivateAttr(default=None)

    def _s3(self) -> Any:  # boto3 clients are untyped
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def _key(self, path: str) -> str:
        return f"{self.prefix.strip('/')}/{path}" if self.prefix else path

    def list_entries(self, prefix: str) -> list[tuple[str, str, float]]:
        root = self._key("")
        out = []
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                out.append(
                    (
                        item["Key"][len(root) :],
                        item["ETag"].strip('"'),
                        item["LastModified"].timestamp(),
                    )
                )
        return sorted(out)

    def read_bytes(self, path: str) -> bytes:
        return self._s3().get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read()
