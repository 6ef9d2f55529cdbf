//! Vault's error texts, shortened to one line for messages, and what a policy
//! must grant.

use serde_json::Value;

use super::Method;

/// Longest Vault error text carried into a message.
const MAX_VAULT_ERROR_CHARS: usize = 300;

/// What a policy must grant for `method`.
pub(super) fn capability(method: Method) -> &'static str {
    match method {
        Method::Get => "the 'read' capability",
        Method::Put | Method::Post => "the 'update' (or 'create') capability",
    }
}

/// Vault's `errors` list, on one line and shortened; error texts name paths and
/// roles, not secrets. Vault wraps some as "1 error occurred:\n\t* permission denied".
pub(super) fn vault_errors(response: &Value) -> String {
    let errors: Vec<String> = response
        .get("errors")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(one_line).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if errors.is_empty() { "no error text".to_owned() } else { errors.join("; ") }
}

/// One error text on one line, without Vault's "N errors occurred:" preamble.
fn one_line(text: &str) -> String {
    let mut parts: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if parts.len() > 1 && parts[0].ends_with("occurred:") {
        parts.remove(0);
    }
    let joined = parts.join("; ");
    joined.chars().take(MAX_VAULT_ERROR_CHARS).collect()
}

/// Vault's error text after a colon, or nothing when there is none.
pub(super) fn optional_errors(response: &Value) -> String {
    let text = vault_errors(response);
    if text == "no error text" { String::new() } else { format!(": {text}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_errors_are_put_on_one_line() {
        let v = serde_json::json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]});
        assert_eq!(vault_errors(&v), "permission denied");
        let v = serde_json::json!({"errors": ["2 errors occurred:\n\t* a\n\t* b\n"]});
        assert_eq!(vault_errors(&v), "a; b");
    }

    #[test]
    fn vault_errors_are_joined_and_shortened() {
        let long = "x".repeat(1000);
        let v = serde_json::json!({"errors": ["permission denied", long]});
        let text = vault_errors(&v);
        assert!(text.starts_with("permission denied; "));
        assert!(text.len() < 400);
        assert_eq!(vault_errors(&serde_json::json!({})), "no error text");
    }
}
