use super::*;

#[test]
fn reads_key_vault_and_entra_errors() {
    let kv = AzureError::read(
        StatusCode::FORBIDDEN,
        br#"{"error":{"code":"Forbidden","message":"The user does not have secrets get permission on key vault 'kv1'.\nmore","innererror":{"code":"AccessDenied"}}}"#,
    );
    assert_eq!(
        kv.describe(),
        "HTTP 403 Forbidden (AccessDenied): The user does not have secrets get permission on key vault 'kv1'."
    );
    assert_eq!(kv.kind(), ErrorKind::Denied);
    let entra = AzureError::read(
        StatusCode::BAD_REQUEST,
        br#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[70021]}"#,
    );
    assert_eq!(entra.aadsts, Some(70021));
    assert_eq!(
        entra.describe(),
        "HTTP 400 invalid_request: AADSTS70021: No matching federated identity record found."
    );
    assert_eq!(entra.kind(), ErrorKind::Denied);
    let junk = AzureError::read(StatusCode::NOT_FOUND, b"<html>");
    assert_eq!(
        (junk.kind(), junk.describe()),
        (ErrorKind::NotFound, "HTTP 404".to_owned())
    );
    let hostile = AzureError::read(
        StatusCode::BAD_REQUEST,
        format!(
            r#"{{"error":{{"code":"a b\u0007","message":"{}"}}}}"#,
            "x".repeat(5000)
        )
        .as_bytes(),
    );
    assert_eq!(hostile.code, None);
    assert_eq!(hostile.message.len(), MAX_ERROR_TEXT);
    assert_eq!(
        AzureError::read(StatusCode::TOO_MANY_REQUESTS, b"").kind(),
        ErrorKind::Unavailable
    );
}
