"""The CalDAV connector's HTTP layer: Digest answers (RFC 7616's worked examples) and its imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connectors.caldav.wire import Digest, basic, challenge_params, request_target

# RFC 7616 section 3.9.1
CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_answers_the_rfc_7616_example(algorithm: str, response: str) -> None:
    """Mufasa's request for /dir/index.html gets the response value RFC 7616 works out, for MD5 and SHA-256."""
    params = challenge_params(CHALLENGE.format(algorithm=algorithm))
    digest = Digest("Mufasa", "Circle of Life", params, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert digest.usable()
    header = digest.header("GET", "/dir/index.html")
    assert f'response="{response}"' in header
    assert "nc=00000001" in header and "qop=auth," in header
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in header
    assert "nc=00000002" in digest.header("GET", "/dir/index.html")  # each use counts


def test_digest_without_a_usable_algorithm_is_not_tried() -> None:
    """A challenge with an algorithm callsheet does not speak (or only auth-int) is left alone: the 401 stands."""
    assert not Digest(
        "u", "p", challenge_params('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    ).usable()
    assert not Digest("u", "p", challenge_params('Digest realm="r", nonce="n", qop="auth-int"')).usable()
    assert Digest("u", "p", challenge_params('Digest realm="r", nonce="n"')).usable()  # RFC 2069 style


def test_challenge_parameters_keep_commas_and_escapes_inside_quotes() -> None:
    """Quoted values may hold commas and escaped quotes; names are case-insensitive."""
    params = challenge_params('Digest Realm="a, \\"b\\"", NONCE=abc, qop="auth"')
    assert params == {"realm": 'a, "b"', "nonce": "abc", "qop": "auth"}


def test_basic_credentials_are_utf8() -> None:
    """Basic sends user:password in UTF-8, base64 (RFC 7617)."""
    assert basic("thérapeute", "pässword") == "Basic dGjDqXJhcGV1dGU6cMOkc3N3b3Jk"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://dav.example/cal/", "/cal/"),
        ("https://dav.example", "/"),
        ("https://dav.example/u/th\u00e9rapeute/cal/", "/u/th%C3%A9rapeute/cal/"),
        ("https://dav.example/u/a%40b.org/x.ics?x=1", "/u/a%40b.org/x.ics?x=1"),
        ("https://dav.example/u/a b/", "/u/a%20b/"),
    ],
)
def test_request_target_percent_encodes_only_what_must_be(url: str, target: str) -> None:
    """A raw non-ASCII or space in a configured URL is encoded; escapes already there stay as they are."""
    assert request_target(url) == target


def test_the_caldav_connector_imports_no_http_library() -> None:
    """A CalDAV pass starts without niquests, urllib3 or the caldav library: their import costs more than a warm pass."""
    code = (
        "import sys, connectors.caldav; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'niquests', 'urllib3', 'caldav', 'requests'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
