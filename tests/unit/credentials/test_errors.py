"""Classification of token-endpoint answers into causes, on the OAuth ``error`` field."""

from __future__ import annotations

import pytest

from agent.credentials.errors import classify_token_answer, scrub, transport_error


@pytest.mark.parametrize(
    ("status", "body", "cause", "message"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            "revoked_or_expired",
            "HTTP Error 400: invalid_grant: Token has been expired or revoked.",
        ),
        (
            401,
            {"error": "invalid_client", "error_description": "The OAuth client was not found."},
            "client_rotated_or_deleted",
            "HTTP Error 401: invalid_client: The OAuth client was not found.",
        ),
        (
            401,
            {"error": "deleted_client", "error_description": "The OAuth client was deleted."},
            "client_rotated_or_deleted",
            "HTTP Error 401: deleted_client: The OAuth client was deleted.",
        ),
        (
            400,
            {"error": "invalid_scope", "error_description": "Some requested scopes were invalid."},
            "scope_mismatch",
            "HTTP Error 400: invalid_scope: Some requested scopes were invalid.",
        ),
        (
            400,
            {"error": "unauthorized_client", "error_description": "Unauthorized"},
            "unauthorized_client",
            "HTTP Error 400: unauthorized_client: Unauthorized",
        ),
        (
            400,
            {
                "error": "invalid_grant",
                "error_description": "reauth related error (invalid_rapt)",
                "error_subtype": "invalid_rapt",
            },
            "reauth_required",
            "HTTP Error 400: invalid_grant: reauth related error (invalid_rapt)",
        ),
        (500, {"error": "internal_failure"}, "transient", "HTTP Error 500: internal_failure"),
        (503, None, "transient", "HTTP Error 503: Service Unavailable"),
        (429, {"error": "rate_limit_exceeded"}, "transient", "HTTP Error 429: rate_limit_exceeded"),
    ],
)
def test_each_token_answer_maps_to_its_cause_and_message(status, body, cause, message):
    err = classify_token_answer(status, body, "Service Unavailable")
    assert err.cause == cause
    assert str(err) == message


def test_a_rotated_secret_401_is_classified_on_the_error_field_not_the_status():
    err = classify_token_answer(
        401, {"error": "invalid_client", "error_description": "Unauthorized"}, ""
    )
    assert err.cause == "client_rotated_or_deleted"


def test_the_libraries_invalid_rapt_message_without_a_body_is_reauth_required():
    err = classify_token_answer(
        None, None, "Reauthentication is needed. Please run `gcloud auth login` to reauthenticate."
    )
    assert err.cause == "reauth_required"


def test_an_unknown_4xx_error_needs_a_new_consent():
    assert classify_token_answer(400, {"error": "invalid_request"}, "").cause == "reauth_required"


def test_scrub_removes_token_shaped_strings_and_named_secrets():
    text = "refresh 1//0gABCDEFGHIJKL access ya29.a0AfB_xyz secret GOCSPX-abc123 mine=hunter22"
    out = scrub(text, ("hunter22",))
    assert "1//0g" not in out and "ya29." not in out and "GOCSPX-" not in out
    assert "hunter22" not in out


def test_a_connection_error_is_transient_and_names_the_reason():
    err = transport_error(ConnectionRefusedError("refused"))
    assert err.cause == "transient"
    assert "ConnectionRefusedError" in str(err)


def test_a_dns_failure_wrapped_by_the_transport_is_transient_and_names_it():
    import socket

    from google.auth.exceptions import TransportError

    # google-auth wraps requests' ConnectionError, which wraps the resolver's gaierror; the
    # test builds the chain instead of resolving a name (tests stay off the network).
    inner = ConnectionError(socket.gaierror(-2, "Name or service not known"))
    err = transport_error(TransportError(inner))
    assert err.cause == "transient"
    assert str(err) == "token endpoint unreachable: ConnectionError (gaierror)"
