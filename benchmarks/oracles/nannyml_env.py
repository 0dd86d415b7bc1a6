"""A separate virtual environment with NannyML 0.13, built once and cached, keyed by its pins.

NannyML's pins are old (lightgbm < 4.6, pandas 2) and it imports statsmodels without declaring it,
so it gets an environment of its own, under ``~/.cache/openmart/oracles/nannyml-<hash of the pins>``
(``OPENMART_ORACLES`` moves the root); a change of pins builds a new one. Everything comes from PyPI.
Tests and benchmarks hand it parquet files and run ``nannyml_oracle.py`` (beside this file) with
that environment's interpreter; openmart itself never imports nannyml.

    python benchmarks/oracles/nannyml_env.py                 # build (or find) it, print its interpreter
    python benchmarks/oracles/nannyml_env.py datasets OUT    # NannyML's datasets and its CBPE/DLE results

Import-light on purpose (standard library only): the test suite imports it to find the oracle.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

# statsmodels: nannyml.plots imports it but nannyml 0.13.1 does not declare it; pandas < 3: NannyML's
# type checks (``dtype in ['object', 'string', ...]``) predate pandas 3's string dtype
PINS = ("nannyml==0.13.1", "statsmodels>=0.14", "pandas>=2.2,<3", "pyarrow>=14")
HERE = Path(__file__).parent
RUNNER = HERE / "nannyml_oracle.py"

#: chunk sizes of the agreement runs: each divides its dataset (50,000 / 60,000 / 60,000 rows per period)
CHUNK_SIZES = {"binary": 5000, "multiclass": 6000, "regression": 6000}


def location() -> Path:
    key = hashlib.sha256("\n".join((f"python{sys.version_info[0]}.{sys.version_info[1]}", *PINS)).encode())
    root = Path(os.environ.get("OPENMART_ORACLES", Path.home() / ".cache" / "openmart" / "oracles"))
    return root / f"nannyml-{key.hexdigest()[:12]}"


def python() -> Path:
    """The environment's interpreter, building the environment first when it is not there."""
    env = location()
    exe = env / "bin" / "python"
    done = env / ".complete"  # written last: a build that died half-way is built again
    if not done.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
        subprocess.run([str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS], check=True)
        done.write_text("\n".join(PINS) + "\n")
    return exe


def run(*args: str) -> None:
    """Run the oracle script in the environment (building it first when needed)."""
    subprocess.run([str(python()), str(RUNNER), *args], check=True)


def datasets(out: Path) -> Path:
    """NannyML's shipped synthetic datasets and its CBPE/DLE per-chunk results, written to ``out``
    once (a ``.complete`` marker, keyed by the chunk sizes) and reused."""
    out = Path(out)
    sizes = ",".join(f"{k}={v}" for k, v in sorted(CHUNK_SIZES.items()))
    marker = out / ".complete"
    if not (marker.exists() and marker.read_text() == sizes):
        out.mkdir(parents=True, exist_ok=True)
        run("datasets", str(out), *(str(CHUNK_SIZES[k]) for k in ("binary", "multiclass", "regression")))
        marker.write_text(sizes)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "datasets":
        print(datasets(Path(sys.argv[2])))
    else:
        print(python())
