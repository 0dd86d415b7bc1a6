"""Every notebook runs end to end (nbclient), against the test database in a schema of its own."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path, database_url: str, schema_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENMART_DATABASE_URL", database_url)
    monkeypatch.setenv("OPENMART_SCHEMA", schema_name)
    monkeypatch.setenv("OPENMART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENMART_REPO", str(path.parents[1]))
    if path.name.startswith("01_"):
        from tests.localstack_support import aws_env, ensure_localstack

        for k, v in aws_env(ensure_localstack()).items():
            monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be cleared"
    with ExitStack() as stack:
        kernel = "python3"
        if path.name.startswith("05-"):  # the IBM client's own venv as kernel, openmart serve, LocalStack
            from tests.openscale_support import notebook_setup

            kernel = stack.enter_context(notebook_setup(database_url, schema_name, tmp_path, monkeypatch))
        NotebookClient(
            nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}}, env=dict(os.environ)
        ).execute()
