"""Authentication of raw requests: HMAC vectors, rotation, Basic, secret files."""

import base64
import hashlib
import hmac
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.core.auth import (
    ALGORITHMS,
    DEFAULT_HMAC_HEADER,
    ENCODINGS,
    Algorithm,
    BasicAuth,
    Encoding,
    HmacAuth,
    NoAuth,
    basic_authorization,
    secret_from_text,
    sign_hmac,
)
from bridge.core.errors import AuthError

VECTORS = Path(__file__).parent / "vectors"
SECRET = b"alm-test-signing-secret-0001"
BODY = (VECTORS / "signed-batch.json").read_bytes()
# HMAC-SHA256(SECRET, BODY), computed with `openssl dgst -sha256 -hmac`.
BODY_SHA256_HEX = "968487ef065917e9939a9850e778ad042dd5fd3c08320593043b2fad4ce2a2c9"
HEADER = DEFAULT_HMAC_HEADER


def signature_vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VECTORS / "signatures.json").read_text())
    return loaded


def accepts(verifier: HmacAuth | BasicAuth | NoAuth, headers: dict[str, str], body: bytes) -> None:
    verifier.precheck(headers)
    verifier.verify(headers, body)


def reason_of(verifier: HmacAuth | BasicAuth, headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(AuthError) as caught:
        accepts(verifier, headers, body)
    assert caught.value.code == "unauthorized"
    return caught.value.reason


class TestHmacVectors:
    def test_the_fixed_vector_matches_an_independent_computation(self) -> None:
        assert hmac.new(SECRET, BODY, hashlib.sha256).hexdigest() == BODY_SHA256_HEX
        assert sign_hmac(BODY, SECRET) == BODY_SHA256_HEX

    @pytest.mark.parametrize(
        ("algorithm", "expected"),
        [
            ("sha1", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            ("sha256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (
                "sha512",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ],
    )
    def test_rfc_vectors(self, algorithm: Algorithm, expected: str) -> None:
        # RFC 2202 / RFC 4231 test case 2.
        body, key = b"what do ya want for nothing?", b"Jefe"
        assert sign_hmac(body, key, algorithm=algorithm) == expected
        accepts(HmacAuth([key], algorithm=algorithm), {HEADER: expected}, body)

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    @pytest.mark.parametrize("encoding", ENCODINGS)
    def test_openssl_vectors_of_the_batch_file(
        self, algorithm: Algorithm, encoding: Encoding
    ) -> None:
        vectors = signature_vectors()
        secret = vectors["secret"].encode()
        expected = vectors["signatures"][algorithm][encoding]
        body = (VECTORS / vectors["body_file"]).read_bytes()
        assert sign_hmac(body, secret, algorithm=algorithm, encoding=encoding) == expected
        verifier = HmacAuth([secret], algorithm=algorithm, encoding=encoding)
        accepts(verifier, {HEADER: expected}, body)
        tampered = body.replace(b"1238", b"1239", 1)
        assert reason_of(verifier, {HEADER: expected}, tampered) == "mismatch"


class TestHmacAuth:
    verifier = HmacAuth([SECRET])

    def test_accepts_the_signature(self) -> None:
        accepts(self.verifier, {HEADER: BODY_SHA256_HEX}, BODY)
        assert self.verifier.needs_body

    def test_accepts_upper_case_hex_and_surrounding_spaces(self) -> None:
        accepts(self.verifier, {HEADER: BODY_SHA256_HEX.upper()}, BODY)
        accepts(self.verifier, {HEADER: f"  {BODY_SHA256_HEX}\t"}, BODY)

    @pytest.mark.parametrize("prefix", ["sha256=", "SHA256=", "sha256 = "])
    def test_accepts_the_algorithm_prefix(self, prefix: str) -> None:
        accepts(self.verifier, {HEADER: prefix + BODY_SHA256_HEX}, BODY)

    @pytest.mark.parametrize("prefix", ["sha1=", "sha512=", "md5=", "v1="])
    def test_prefix_naming_another_algorithm_is_malformed(self, prefix: str) -> None:
        headers = {HEADER: prefix + BODY_SHA256_HEX}
        assert reason_of(self.verifier, headers, BODY) == "malformed"

    def test_tampered_body(self) -> None:
        tampered = BODY.replace(b'"accountId": 1010', b'"accountId": 1011')
        assert tampered != BODY
        assert reason_of(self.verifier, {HEADER: BODY_SHA256_HEX}, tampered) == "mismatch"
        assert reason_of(self.verifier, {HEADER: BODY_SHA256_HEX}, BODY + b" ") == "mismatch"

    def test_tampered_signature(self) -> None:
        last = BODY_SHA256_HEX[-1]
        flipped = BODY_SHA256_HEX[:-1] + ("0" if last != "0" else "1")
        assert reason_of(self.verifier, {HEADER: flipped}, BODY) == "mismatch"
        # Cut short, it cannot be an HMAC-SHA256 at all.
        assert reason_of(self.verifier, {HEADER: BODY_SHA256_HEX[:-2]}, BODY) == "malformed"

    def test_wrong_secret(self) -> None:
        other = HmacAuth([b"another-secret"])
        assert reason_of(other, {HEADER: BODY_SHA256_HEX}, BODY) == "mismatch"

    @pytest.mark.parametrize("headers", [{}, {HEADER: ""}, {HEADER: "   "}, {"X-Other": "ab"}])
    def test_missing_header(self, headers: dict[str, str]) -> None:
        assert reason_of(self.verifier, headers, BODY) == "missing"
        with pytest.raises(AuthError) as caught:
            self.verifier.verify(headers, BODY)
        assert caught.value.reason == "missing"

    @pytest.mark.parametrize("value", ["not-hex", "abc", "zz" * 32, "sha256=xyz"])
    def test_non_hex_is_malformed(self, value: str) -> None:
        assert reason_of(self.verifier, {HEADER: value}, BODY) == "malformed"

    def test_base64_encoding(self) -> None:
        digest = hmac.new(SECRET, BODY, hashlib.sha256).digest()
        b64 = base64.b64encode(digest).decode()
        verifier = HmacAuth([SECRET], encoding="base64")
        accepts(verifier, {HEADER: b64}, BODY)
        accepts(verifier, {HEADER: f"sha256={b64}"}, BODY)
        assert reason_of(verifier, {HEADER: BODY_SHA256_HEX}, BODY) in {"malformed", "mismatch"}
        assert reason_of(verifier, {HEADER: "!!not base64!!"}, BODY) == "malformed"

    @pytest.mark.parametrize(
        ("algorithm", "hash_name"), [("sha1", hashlib.sha1), ("sha512", hashlib.sha512)]
    )
    def test_other_algorithms(self, algorithm: Algorithm, hash_name: Any) -> None:
        signature = hmac.new(SECRET, BODY, hash_name).hexdigest()
        verifier = HmacAuth([SECRET], algorithm=algorithm)
        accepts(verifier, {HEADER: signature}, BODY)
        accepts(verifier, {HEADER: f"{algorithm}={signature}"}, BODY)
        # A SHA-256 signature has the wrong length for either: malformed, body unread.
        assert reason_of(verifier, {HEADER: BODY_SHA256_HEX}, BODY) == "malformed"
        assert reason_of(verifier, {HEADER: f"sha256={signature}"}, BODY) == "malformed"

    @pytest.mark.parametrize("value", ["ab" * 31, "ab" * 33, "ab", "sha256=" + "ab" * 16])
    def test_a_signature_of_the_wrong_length_fails_before_the_body(self, value: str) -> None:
        with pytest.raises(AuthError) as caught:
            self.verifier.precheck({HEADER: value})
        assert caught.value.reason == "malformed"

    def test_a_well_formed_signature_passes_the_precheck(self) -> None:
        self.verifier.precheck({HEADER: "00" * 32})
        with pytest.raises(AuthError) as caught:
            self.verifier.verify({HEADER: "00" * 32}, BODY)
        assert caught.value.reason == "mismatch"

    def test_rotation_accepts_either_secret(self) -> None:
        old, new = b"old-secret", b"new-secret"
        verifier = HmacAuth([old, new])
        for secret in (old, new):
            signature = hmac.new(secret, BODY, hashlib.sha256).hexdigest()
            accepts(verifier, {HEADER: signature}, BODY)
        stranger = hmac.new(b"third-secret", BODY, hashlib.sha256).hexdigest()
        assert reason_of(verifier, {HEADER: stranger}, BODY) == "mismatch"

    def test_custom_header_name(self) -> None:
        verifier = HmacAuth([SECRET], header="X-Hub-Signature-256")
        accepts(verifier, {"X-Hub-Signature-256": f"sha256={BODY_SHA256_HEX}"}, BODY)
        assert reason_of(verifier, {HEADER: BODY_SHA256_HEX}, BODY) == "missing"

    def test_repr_hides_secrets(self) -> None:
        assert SECRET.decode() not in repr(HmacAuth([SECRET]))


class TestSignHmac:
    @pytest.mark.parametrize(
        ("algorithm", "encoding", "prefix"),
        list(itertools.product(ALGORITHMS, ENCODINGS, (False, True))),
    )
    def test_round_trip(self, algorithm: Algorithm, encoding: Encoding, prefix: bool) -> None:
        value = sign_hmac(BODY, SECRET, algorithm=algorithm, encoding=encoding, prefix=prefix)
        assert value.startswith(f"{algorithm}=") == prefix
        verifier = HmacAuth([SECRET], algorithm=algorithm, encoding=encoding)
        accepts(verifier, {HEADER: value}, BODY)
        assert reason_of(verifier, {HEADER: value}, BODY + b"x") == "mismatch"

    def test_unknown_algorithm_or_encoding(self) -> None:
        with pytest.raises(ValueError, match="algorithm"):
            sign_hmac(BODY, SECRET, algorithm="md5")
        with pytest.raises(ValueError, match="encoding"):
            sign_hmac(BODY, SECRET, encoding="base32")


class TestBasicAuth:
    verifier = BasicAuth([("alm", "s3cret"), ("second", "pa:ss:word")])

    @staticmethod
    def header(user: str, password: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def test_correct_pairs_accepted(self) -> None:
        accepts(self.verifier, self.header("alm", "s3cret"), b"")
        accepts(self.verifier, self.header("second", "pa:ss:word"), b"")
        assert not self.verifier.needs_body

    def test_scheme_is_case_insensitive(self) -> None:
        token = base64.b64encode(b"alm:s3cret").decode()
        accepts(self.verifier, {"Authorization": f"basic {token}"}, b"")

    @pytest.mark.parametrize(
        ("user", "password"),
        [("alm", "wrong"), ("alm", "s3cret "), ("nobody", "s3cret"), ("second", "pa:ss"), ("", "")],
    )
    def test_mismatch(self, user: str, password: str) -> None:
        assert reason_of(self.verifier, self.header(user, password), b"") == "mismatch"

    @pytest.mark.parametrize("headers", [{}, {"Authorization": ""}])
    def test_missing(self, headers: dict[str, str]) -> None:
        assert reason_of(self.verifier, headers, b"") == "missing"

    @pytest.mark.parametrize(
        "value",
        [
            "Bearer YWxtOnMzY3JldA==",
            "Basic",
            "Basic ",
            "Basic not*base64!",
            "Basic " + base64.b64encode(b"no-colon-here").decode(),
            "Basic " + base64.b64encode(b"alm:\xff\xfe").decode(),
        ],
    )
    def test_malformed(self, value: str) -> None:
        assert reason_of(self.verifier, {"Authorization": value}, b"") == "malformed"

    def test_password_with_colons(self) -> None:
        verifier = BasicAuth([("user", "a:b:c")])
        accepts(verifier, {"Authorization": basic_authorization("user", "a:b:c")}, b"")

    def test_basic_authorization_header(self) -> None:
        # The example of RFC 7617, section 2.
        assert basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        accepts(
            BasicAuth([("Aladdin", "open sesame")]),
            {"Authorization": basic_authorization("Aladdin", "open sesame")},
            b"",
        )

    def test_non_ascii_credentials(self) -> None:
        verifier = BasicAuth([("jürgen", "pässwörd")])
        accepts(verifier, {"Authorization": basic_authorization("jürgen", "pässwörd")}, b"")

    def test_repr_hides_passwords(self) -> None:
        assert "s3cret" not in repr(self.verifier)


class TestNoAuth:
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "garbage"}, {HEADER: "0" * 64}])
    def test_accepts_anything(self, headers: dict[str, str]) -> None:
        accepts(NoAuth(), headers, b"\x00 anything")
        assert not NoAuth().needs_body


class TestSecretFromText:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("plain-secret", b"plain-secret"),
            ("  plain-secret\n", b"plain-secret"),
            ('"json-string-secret"\n', b"json-string-secret"),
            ('{"signingSecret": "only-value"}', b"only-value"),
            ('{"whatever": " padded "}', b"padded"),
            ('{"id": 7, "enabled": true, "token": "the-one-string"}', b"the-one-string"),
            ('{"name": "x", "signingSecret": "y"}', b"y"),
            ('{"name": "x", "description": "d", "secret": "z"}', b"z"),
            ('{"name": "x", "SigningSecret": "case"}', b"case"),
            ('{"key": "k", "signingSecret": "preferred"}', b"preferred"),
            ("{not json at all", b"{not json at all"),
        ],
    )
    def test_accepted_shapes(self, text: str, expected: bytes) -> None:
        assert secret_from_text(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "   \n",
            '{"name": "x", "description": "y"}',
            "{}",
            '{"signingSecret": ""}',
            '""',
        ],
    )
    def test_rejected(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"secret|JSON"):
            secret_from_text(text)

    def test_secret_file_verifies_a_signature(self, tmp_path: Path) -> None:
        path = tmp_path / "signing-secret.json"
        path.write_text(json.dumps({"name": "prod", "signingSecret": SECRET.decode()}))
        verifier = HmacAuth([secret_from_text(path.read_text())])
        accepts(verifier, {HEADER: BODY_SHA256_HEX}, BODY)
