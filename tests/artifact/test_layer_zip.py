"""The shared layer as ``sam package`` uploads it: the built ``CommonLayer`` zipped by SAM's own code (the zip
method it uses for Lambda functions and layers), which must carry every SQL migration byte for byte.

The migrations live in the package (``layers/common/connvault/schema/``), where the layer build takes them from;
``schema/`` at the root of the repository is a link to that directory, for reading and for tools only.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path, PurePosixPath

from connvault.migrations import SCHEMA_DIR
from tests.artifact.conftest import LAYER
from tests.infrastructure.cfn import REPO

SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
ZIP_AS_SAM_PACKAGE_DOES = (
    "import sys\n"
    "from samcli.lib.package.utils import make_zip_with_lambda_permissions\n"
    "print(make_zip_with_lambda_permissions(sys.argv[1], sys.argv[2]))\n"
)
SCHEMA_IN_LAYER = PurePosixPath("python/connvault/schema")
"""Where the runtime finds them: /opt/python/connvault/schema."""


def test_the_root_schema_directory_is_a_link_to_the_migrations_the_layer_ships() -> None:
    assert (REPO / "schema").is_symlink()
    assert (REPO / "schema").resolve() == SCHEMA_DIR


def test_the_layer_zip_sam_package_uploads_carries_every_sql_migration(sam_build: Path, tmp_path: Path) -> None:
    # Given the built layer, zipped the way `sam package` zips it for upload
    zipped = subprocess.run(
        [str(SAM_PYTHON), "-c", ZIP_AS_SAM_PACKAGE_DOES, str(tmp_path / "layer"), str(sam_build / LAYER)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert zipped.returncode == 0, zipped.stderr[-4000:]
    archive = Path(zipped.stdout.strip())
    expected = {path.name: path.read_bytes() for path in SCHEMA_DIR.glob("*.sql")}
    assert any(name.endswith(".down.sql") for name in expected), "schema/ holds no reversal"

    # Then it holds each migration and its reversal where the runtime looks, unchanged and readable by anyone
    with zipfile.ZipFile(archive) as layer:
        shipped = {
            PurePosixPath(entry.filename).name: entry
            for entry in layer.infolist()
            if PurePosixPath(entry.filename).parent == SCHEMA_IN_LAYER and entry.filename.endswith(".sql")
        }
        assert sorted(shipped) == sorted(expected)
        for name, entry in shipped.items():
            assert layer.read(entry) == expected[name], name
            assert (entry.external_attr >> 16) & 0o444 == 0o444, name
