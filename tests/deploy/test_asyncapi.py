"""The AsyncAPI documents pass AsyncAPI's own parser (@asyncapi/parser, from npm).

scripts/ensure-tools.sh installs the parser into the tools cache; scripts/asyncapi-validate.cjs
runs it over files and prints every diagnostic.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from bridge.config.settings import (
    AuthSettings,
    DeadLetterSettings,
    ReceiverSettings,
    RoutingSettings,
    Settings,
)
from bridge.contract import build_document, render_yaml, sample_bodies
from tests.deploy.toolbox import INSTALL_HINT, REPO, run, tools_bin

pytestmark = pytest.mark.deploy

VALIDATE = REPO / "scripts" / "asyncapi-validate.cjs"
DOCUMENT = REPO / "docs" / "asyncapi.yaml"


def _parser_dir() -> Path:
    script = (REPO / "scripts" / "ensure-tools.sh").read_text(encoding="utf-8")
    match = re.search(r"ASYNCAPI_PARSER_VERSION:-([0-9][0-9A-Za-z.-]*)", script)
    assert match, "scripts/ensure-tools.sh names no default @asyncapi/parser version"
    version = os.environ.get("ASYNCAPI_PARSER_VERSION", match.group(1))
    prefix = tools_bin().parent / f"asyncapi-parser-{version}"
    node = shutil.which("node")
    if node is None or not (prefix / "node_modules" / "@asyncapi" / "parser").is_dir():
        message = f"node or @asyncapi/parser {version} missing in {prefix}; run {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return prefix


def _validate(*files: Path) -> tuple[int, str]:
    result = run(["node", str(VALIDATE), str(_parser_dir()), *map(str, files)], timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_checked_in_document_is_valid_asyncapi() -> None:
    code, output = _validate(DOCUMENT)

    assert code == 0, output
    assert f"{DOCUMENT}: valid AsyncAPI 3.0.0" in output


def test_document_of_a_rich_configuration_is_valid_asyncapi(tmp_path: Path) -> None:
    def receiver(name: str, **routing: object) -> ReceiverSettings:
        return ReceiverSettings(
            name=name,
            auth=AuthSettings(method="hmac", secrets=[SecretStr("s")]),
            routing=RoutingSettings(**routing),  # type: ignore[arg-type]
            dead_letter=DeadLetterSettings(topic=f"{name}.dead"),
        )

    settings = Settings(
        kafka_bootstrap_servers="kafka-0.example:9093,kafka-1.example:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_ssl_certfile=tmp_path / "client.pem",
        kafka_ssl_keyfile=tmp_path / "client.key",
        receivers=[
            receiver(
                "prod",
                overrides={"LEARNER_PROGRESS": "lms.progress"},
                unlisted="catchall",
                source_template="urn:alm-prod:{accountId}",
            ),
            receiver("partner", topic_template="partner.{event}", key="none", deny=["CI_STATS"]),
            receiver("legacy", allow=["COURSE_COMPLETED"], unlisted="deadletter"),
        ],
    )
    path = tmp_path / "rich.yaml"
    path.write_text(render_yaml(build_document(settings, samples=sample_bodies())))

    code, output = _validate(path)

    assert code == 0, output
    assert "valid AsyncAPI 3.0.0" in output


def test_a_broken_document_is_rejected(tmp_path: Path) -> None:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    channel = next(iter(document["channels"].values()))
    channel["messages"]["missing"] = {"$ref": "#/components/messages/doesNotExist"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))

    code, output = _validate(path)

    assert code == 1, output
    assert "INVALID" in output
