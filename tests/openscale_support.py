"""The real ``ibm-ai-openscale`` client for the tests: a side virtualenv per client version (its
pins clash with the project's), built once and reused under a cache directory outside the repo,
keyed by the pins, with a file lock so two test processes never build it at once; a breast-cancer
model under IBM's column names deployed to SageMaker on LocalStack; ``openmart serve`` with a key
and a sealing key; the notebook's code as a script."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05-openscale-client.ipynb"
CACHE = Path(os.environ.get("OPENMART_TEST_CACHE", Path.home() / ".cache" / "openmart-tests"))
#: the newest release of each line that installs here (2.1.x: 2.1.21; 2.2.x: 2.2.1)
VERSIONS = ("2.1.21", "2.2.1")
#: besides the client: boto3 (the notebook invokes the endpoint), ipykernel (the notebook's
#: kernel), setuptools < 81 (the client imports pkg_resources), and the client's own dependencies
#: at versions seen to work with it, so that a new release of one cannot break these tests
EXTRA_PINS = (
    "boto3==1.44.5",
    "ipykernel==7.4.0",
    "setuptools<81",
    "pandas==3.1.1",
    "numpy==2.4.6",
    "requests==2.34.2",
    "h5py==3.16.0",
    "tabulate==0.10.0",
)
BUILD_TIMEOUT = 1200.0
FIELDS = [
    "radius_mean", "texture_mean", "perimeter_mean", "area_mean", "smoothness_mean", "compactness_mean",
    "concavity_mean", "concave points_mean", "symmetry_mean", "fractal_dimension_mean", "radius_se",
    "texture_se", "perimeter_se", "area_se", "smoothness_se", "compactness_se", "concavity_se",
    "concave points_se", "symmetry_se", "fractal_dimension_se", "radius_worst", "texture_worst",
    "perimeter_worst", "area_worst", "smoothness_worst", "compactness_worst", "concavity_worst",
    "concave points_worst", "symmetry_worst", "fractal_dimension_worst",
]  # fmt: skip


def pins(version: str) -> list[str]:
    return [f"ibm-ai-openscale=={version}", *EXTRA_PINS]


def client_python(version: str) -> Path:
    """The side venv's interpreter for this client version (built when missing)."""
    wanted = pins(version)
    digest = hashlib.sha256(json.dumps([sys.version_info[:2], wanted]).encode()).hexdigest()[:12]
    home = CACHE / f"ibm-ai-openscale-{version}-{digest}"
    python = home / "bin" / "python"
    ready = home / ".ready"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"ibm-ai-openscale-{version}-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building it: wait for it, then reuse
        if not ready.exists():
            shutil.rmtree(home, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=BUILD_TIMEOUT)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
                check=True,
                timeout=BUILD_TIMEOUT,
            )
            ready.write_text(json.dumps(wanted))
    return python


def kernel_dir(version: str) -> tuple[Path, str]:
    """A Jupyter data directory holding a kernelspec that runs the side venv's interpreter: set
    JUPYTER_PATH to it and ask nbclient for the returned kernel name."""
    python = client_python(version)
    name = f"openscale-client-{version.replace('.', '-')}"
    spec = python.parents[1] / "jupyter" / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    return python.parents[1] / "jupyter", name


def notebook_script() -> str:
    """The notebook's code cells, in order, as one script (no shell escapes in them)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    assert not any(line.lstrip().startswith(("!", "%")) for cell in cells for line in cell.splitlines())
    return "\n\n".join(f"# -- cell {i}\n{src}" for i, src in enumerate(cells))


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def deploy_breast_cancer() -> tuple[str, str]:
    """A logistic regression on scikit-learn's breast-cancer data under IBM's column names
    (``diagnosis`` 1 = malignant, as IBM's sample) on the emulated SageMaker, as the built-in
    linear learner answers: ``{"predictions": [{"predicted_label", "score"}]}``. Returns the model
    and endpoint names (AWS_* variables must point at LocalStack)."""
    import boto3
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(data.data, 1 - data.target)
    buf = io.BytesIO()
    joblib.dump(model, buf)
    name = f"breast-cancer-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").put_object(
        Bucket="openmart-models", Key=f"{name}/model.tar.gz", Body=_tar("model.joblib", buf.getvalue())
    )
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/sagemaker",
        PrimaryContainer={
            "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "ModelDataUrl": f"s3://openmart-models/{name}/model.tar.gz",
        },
    )
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    endpoint = f"{name}-endpoint"
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    return name, endpoint


@contextmanager
def openscale_service(
    database_url: str, schema: str, tmp_path: Path, aws: dict[str, str]
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """``openmart serve`` on a free port with an admin key and a sealing key, reaching LocalStack
    through ``aws``; yields its URL, the key and the environment it runs with."""
    from cryptography.fernet import Fernet

    import openmart
    from tests.service_support import running_service, service_env

    env = service_env(database_url, schema, tmp_path / "data", OPENMART_SECRET_KEY=Fernet.generate_key().decode())
    env.update(aws)
    mart = openmart.connect(database_url, schema=schema)
    try:
        _, key = mart.keys.create("openscale-client", "admin")
    finally:
        mart.close()
    with running_service(database_url, schema, tmp_path, env=env) as svc:
        yield svc.url, key, env


@contextmanager
def notebook_setup(database_url: str, schema: str, tmp_path: Path, monkeypatch: object) -> Iterator[str]:
    """For tests/test_notebooks.py: LocalStack, a deployed model, ``openmart serve``, and the
    kernel of the 2.2.x client's side venv; yields the kernel name (the environment is set)."""
    from tests.localstack_support import aws_env, ensure_localstack

    aws = aws_env(ensure_localstack())
    for k, v in aws.items():
        monkeypatch.setenv(k, v)  # type: ignore[attr-defined]
    model, endpoint = deploy_breast_cancer()
    path, kernel = kernel_dir(VERSIONS[-1])
    with openscale_service(database_url, schema, tmp_path, aws) as (url, key, _):
        for k, v in {
            "OPENMART_URL": url,
            "OPENMART_API_KEY": key,
            "OPENMART_DATA_MART": schema,
            "SAGEMAKER_MODEL": model,
            "JUPYTER_PATH": str(path),
        }.items():
            monkeypatch.setenv(k, v)  # type: ignore[attr-defined]
        try:
            yield kernel
        finally:
            import boto3

            boto3.client("sagemaker").delete_endpoint(EndpointName=endpoint)
