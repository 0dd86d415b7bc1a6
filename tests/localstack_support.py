"""LocalStack for the test suite: use the one answering on AWS_ENDPOINT_URL (or 127.0.0.1:4566),
or start it with localstack/manage.py (which builds its environment the first time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

MANAGE = Path(__file__).resolve().parents[1] / "localstack" / "manage.py"
DEFAULT = "http://127.0.0.1:4566"


def _sagemaker_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as r:
            return "s3" in json.load(r).get("services", {})
    except OSError:
        return False


def aws_env(url: str) -> dict[str, str]:
    """The standard variables boto3 reads: endpoint, dummy credentials, a region."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def ensure_localstack() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL") or DEFAULT
    if not _sagemaker_ready(url):
        subprocess.run([sys.executable, str(MANAGE), "start"], check=True, timeout=1800)
    return url
