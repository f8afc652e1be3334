"""The edges of issue 13, one test (or a few) per finding; each failed on the code before.

1 media without permission, 2 bad input answered 500 or stored wrong, 3 invitation
takeover, 4 open redirect, 5 uploads with the node token alone, 9 provider downloads
following redirects anywhere.
"""

from __future__ import annotations

import base64
import datetime
import importlib
import json
import socket
import ssl
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import clear_url_caches

from accounts import actions
from accounts.models import Membership
from config.media_links import signed_media_url
from conftest import client_for, make_user
from generation.models import Shot, Submission, Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import NODE_TOKEN, fund, setup_catalog, subscribe
from workers import outbound, providers
from workers.backends import PermanentBackendError, TransientBackendError
from workers.backends.cog import prediction_id

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


@pytest.fixture
def funded(acme):
    setup_catalog()
    fund(acme, 1000)
    return acme


def _take(workspace, user, key="edge") -> Take:
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=1)
    [take] = submit_takes(workspace, user, spec, idempotency_key=key)
    return take


def _path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


# --- 1. media ---------------------------------------------------------------------------


def test_the_media_folder_is_not_mounted_even_with_debug_on(settings, client):
    name = default_storage.save(f"takes/{uuid.uuid4()}/video.mp4", ContentFile(b"video"))
    settings.DEBUG = True
    import config.urls

    try:
        importlib.reload(config.urls)
        clear_url_caches()
        assert client.get(f"/media/{name}").status_code == 404
    finally:
        settings.DEBUG = False
        importlib.reload(config.urls)
        clear_url_caches()


def test_a_download_link_does_not_reveal_the_storage_path():
    name = f"takes/{uuid.uuid4()}/original.mp4"
    token = _path_of(signed_media_url(name)).rstrip("/").rsplit("/", 1)[1]

    readable = []
    for part in token.lstrip(".").split(":") + [token]:
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            continue
        readable.append(raw)
        try:
            readable.append(zlib.decompress(raw))
        except zlib.error:
            pass
    assert not any(name.encode() in raw or b"takes/" in raw for raw in readable)


def test_x_accel_redirect_hands_the_file_to_nginx(settings, client):
    settings.MEDIA_ACCEL_REDIRECT = "/_media/"
    name = default_storage.save("takes/accel/original.mp4", ContentFile(b"bytes"))

    response = client.get(_path_of(signed_media_url(name)), HTTP_RANGE="bytes=0-1")

    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/_media/{name}"
    assert response["Content-Type"] == "video/mp4"


# --- 2. bad input -----------------------------------------------------------------------

BAD_JSON_BODIES = [
    b"[]",
    b"null",
    b'"s"',
    b"1",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"prompt": "' + b"[" * 50 + b'", "x": ' + b"[" * 40 + b"]" * 40 + b"}",
    b"{bad json",
    b'{"prompt": NaN}',
    b"\xff\xfe",
]


def _counts():
    return (
        Take.objects.count(),
        Shot.objects.count(),
        Submission.objects.count(),
    )


@pytest.mark.parametrize("body", BAD_JSON_BODIES, ids=lambda b: repr(b[:20]))
def test_a_json_body_that_is_not_a_shallow_object_is_a_400(alice, funded, body):
    client = client_for(alice, funded)
    before = _counts()

    response = client.post("/api/v1/takes/", body, content_type="application/json")

    assert response.status_code == 400, response.content[:200]
    assert {"detail", "field", "errors"} <= set(response.json())
    assert _counts() == before


VALID = {
    "model": "wan2.1-t2v-1.3b",
    "prompt": "a red kite",
    "resolution": "480p",
    "duration": 1,
}
BAD_FIELDS = [
    ("prompt", "a\x00b"),
    ("negative_prompt", "no\x00pe"),
    ("model", "wan2.1-t2v-1.3b\x00"),
    ("prompt", "\ud800 lone"),
    ("prompt", None),
    ("prompt", ["a", "list"]),
    ("prompt", {"an": "object"}),
    ("prompt", 12),
    ("negative_prompt", "x" * 1_000_000),
    ("duration", True),
    ("count", 1.5),
    ("count", "1.5"),
    ("duration", 1.0),
    ("seed", 2**80),
    ("project", 2**70),
    ("fps", -1),
    # A refused choice is quoted in the message: a lone surrogate there broke the answer.
    ("resolution", "\ud800"),
    ("mode", "draft\udfff"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=lambda v: repr(v)[:30])
def test_a_bad_field_is_a_400_naming_it_and_writes_nothing(alice, funded, field, value):
    client = client_for(alice, funded)
    before = _counts()
    body = json.dumps({**VALID, field: value}, ensure_ascii=True)

    response = client.post("/api/v1/takes/", body, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == field
    assert _counts() == before


@pytest.mark.parametrize("model", ["wan2.1-t2v-1.3b\x00", "\ud800"], ids=["nul", "surrogate"])
def test_the_openai_video_create_refuses_an_unstorable_model_name(alice, funded, model):
    before = _counts()
    body = json.dumps({"prompt": "a kite", "model": model})

    response = client_for(alice, funded).post("/v1/videos", body, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["param"] == "model"
    assert _counts() == before


def test_nul_in_the_idempotency_header_is_a_400(alice, funded):
    response = client_for(alice, funded).post(
        "/api/v1/takes/",
        json.dumps(VALID),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k\x00",
    )
    assert response.status_code == 400
    assert Take.objects.count() == 0


def test_the_studio_form_and_quote_refuse_nul_without_a_500(alice, funded):
    client = client_for(alice, funded)
    before = _counts()

    posted = client.post("/studio/", {**VALID, "prompt": "a\x00b", "idempotency_key": "s1"})
    quote = client.get("/studio/quote/", {"model": "ltx-video-2b\x00x", "prompt": "p"})
    options = client.get("/studio/options/", {"model": "ltx-video-2b\x00x"})
    grid = client.get("/studio/takes/", {"project": str(2**70)})

    assert posted.status_code == 400
    assert quote.status_code == 200 and b"NUL" in quote.content
    assert options.status_code == 404 and grid.status_code == 404
    assert _counts() == before


def test_a_valid_json_submission_still_works(alice, funded):
    subscribe(funded, "studio")  # batches of more than one take
    body = json.dumps({**VALID, "count": 2, "idempotency_key": "ok"})
    response = client_for(alice, funded).post(
        "/api/v1/takes/", body, content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    assert len(response.json()["takes"]) == 2


# --- 3. invitations ---------------------------------------------------------------------


def test_an_unverified_address_cannot_accept_an_invitation(settings, alice, acme, charlie):
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    subscribe(acme, "studio")
    invitation = actions.invite_member(acme, "dana@example.com", "member", acting_user=alice)
    # charlie adds dana's address (never verified) and makes it his primary one.
    EmailAddress.objects.filter(user=charlie).update(primary=False)
    EmailAddress.objects.create(user=charlie, email="dana@example.com", primary=True)
    charlie.email = "dana@example.com"
    charlie.save()

    response = client_for(charlie).post(f"/invitations/{invitation.token}/")

    assert not Membership.objects.filter(workspace=acme, user=charlie).exists()
    assert response.status_code == 200
    with pytest.raises(actions.WorkspaceActionError):
        actions.accept_invitation(invitation.token, charlie)


def test_a_verified_matching_address_accepts_the_invitation(alice, acme):
    dana = make_user("dana@example.com")
    subscribe(acme, "studio")
    invitation = actions.invite_member(acme, "Dana@Example.com", "member", acting_user=alice)

    response = client_for(dana).post(f"/invitations/{invitation.token}/")

    assert response.status_code == 302
    assert Membership.objects.filter(workspace=acme, user=dana).exists()


# --- 4. open redirect -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/phish", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
def test_switching_workspace_never_redirects_off_site(alice, acme, target):
    response = client_for(alice).post(f"/workspaces/{acme.pk}/switch/", {"next": target})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_switching_workspace_returns_to_a_page_on_the_site(alice, acme):
    response = client_for(alice).post(f"/workspaces/{acme.pk}/switch/", {"next": "/studio/"})
    assert response["Location"] == "/studio/"


# --- 5. node uploads --------------------------------------------------------------------


@pytest.fixture
def running_take(alice, funded):
    take = _take(funded, alice)
    node = setup_catalog()
    Take.objects.filter(pk=take.pk).update(status=TakeStatus.RUNNING, node=node, attempts=1)
    take.refresh_from_db()
    return take


def _upload(client, token: str, prediction: str):
    return client.put(
        f"/ingest/{token}/out.mp4",
        b"not really a video",
        content_type="video/mp4",
        HTTP_X_PREDICTION_ID=prediction,
    )


def test_the_node_token_alone_cannot_write_into_a_take(client, running_take):
    take = running_take

    assert _upload(client, NODE_TOKEN, str(take.pk)).status_code == 404
    assert _upload(client, NODE_TOKEN, f"{take.pk}_wrong-secret").status_code == 404
    take.refresh_from_db()
    assert take.output_original == ""

    good = _upload(client, NODE_TOKEN, prediction_id(take.pk, take.webhook_secret))
    assert good.status_code == 201
    take.refresh_from_db()
    assert take.output_original.startswith(f"takes/{take.pk}/")
    assert take.webhook_secret not in take.output_original


def test_the_documented_node_token_is_refused_outside_debug(settings, client, running_take):
    take = running_take
    take.node.auth_token = "reference-node-token"
    take.node.save()
    prediction = prediction_id(take.pk, take.webhook_secret)

    assert _upload(client, "reference-node-token", prediction).status_code == 404
    settings.DEBUG = True
    assert _upload(client, "reference-node-token", prediction).status_code == 201


# --- 9. provider output downloads -------------------------------------------------------


class _Server:
    def __init__(
        self, answer, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.hits: list[str] = []
        self.hosts: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner.hits.append(self.path)
                owner.hosts.append(self.headers.get("Host", ""))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def internal():
    """A service on the private network (here: loopback) that must never be fetched."""
    server = _Server(lambda path: (200, {}, b"internal secrets"))
    yield server
    server.close()


def test_a_provider_redirect_to_a_private_address_is_not_followed(settings, internal):
    provider = _Server(lambda path: (302, {"Location": f"{internal.url}/latest/meta-data"}, b""))
    settings.OUTBOUND_TRUSTED_HOSTS = [f"127.0.0.1:{provider.port}"]
    try:
        with pytest.raises(PermanentBackendError, match="non-public|refused"):
            providers._download(f"{provider.url}/out.mp4", "takes/ssrf/original.mp4")
    finally:
        provider.close()
    assert provider.hits == ["/out.mp4"]
    assert internal.hits == []
    assert not default_storage.exists("takes/ssrf/original.mp4")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://[::ffff:192.168.0.1]/x",
        "https://localhost/x",
        "http://93.184.215.14/x",
        "file:///etc/passwd",
        "ftp://example.com/x",
    ],
)
def test_outbound_refuses_private_addresses_and_plain_http(url):
    with pytest.raises(outbound.UnsafeURL):
        outbound.check_url(url)


def test_a_trusted_host_may_serve_over_http(settings, internal):
    settings.OUTBOUND_TRUSTED_HOSTS = [f"127.0.0.1:{internal.port}"]
    name = providers._download(f"{internal.url}/ok.mp4", "takes/trusted/original.mp4")
    with default_storage.open(name) as handle:
        assert handle.read() == b"internal secrets"


def test_a_fetch_connects_to_the_address_it_checked_not_to_a_second_dns_answer(
    settings, monkeypatch, internal
):
    """DNS rebinding: the host's first answer passes the check; any later answer points at
    the internal service. The download must go where the check looked, once resolved."""
    # 127.0.0.2 stands in for a public address: the check accepts it and nothing else.
    public = _Server(lambda path: (200, {}, b"the output"), host="127.0.0.2", port=internal.port)
    monkeypatch.setattr(outbound, "_public", lambda address: address == "127.0.0.2")
    settings.DEBUG = True  # plain http, for the local servers
    answers: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "files.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        answers.append("127.0.0.1" if answers else "127.0.0.2")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        name = providers._download(
            f"http://files.example:{internal.port}/out.mp4", "takes/rebind/original.mp4"
        )
    finally:
        public.close()
    assert internal.hits == []
    assert public.hits == ["/out.mp4"]
    assert public.hosts == [f"files.example:{internal.port}"]  # the name, not the address
    assert answers == ["127.0.0.2"]  # resolved once, by the check
    with default_storage.open(name) as handle:
        assert handle.read() == b"the output"


def _certificate(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (its own authority) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("certified", "served"), [("files.example", True), ("evil.example", False)]
)
def test_a_pinned_https_fetch_checks_the_certificate_against_the_host_name(
    tmp_path, monkeypatch, certified, served
):
    """Connecting to the checked address keeps TLS honest: SNI and the certificate check
    use the URL's host name, so the right certificate is accepted and another refused."""
    cert_path, key_path = _certificate(certified, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the only authority trusted
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = _Server(lambda path: (200, {}, b"over tls"), host="127.0.0.2", tls=context)
    monkeypatch.setattr(outbound, "_public", lambda address: address == "127.0.0.2")
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host != "files.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    url = f"https://files.example:{server.port}/out.mp4"
    try:
        if served:
            name = providers._download(url, "takes/tls/original.mp4")
            with default_storage.open(name) as handle:
                assert handle.read() == b"over tls"
            assert server.hosts == [f"files.example:{server.port}"]
        else:
            with pytest.raises(TransientBackendError, match="certificate verify failed"):
                providers._download(url, "takes/tls/original.mp4")
            assert server.hits == []
    finally:
        server.close()
