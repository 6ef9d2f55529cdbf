use super::*;

#[test]
fn versions_from_ids() {
    let v = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        id_version(Some(&format!("https://kv1.vault.azure.net/secrets/db/{v}"))).as_deref(),
        Some(v)
    );
    assert_eq!(
        id_version(Some(&format!(
            "https://127.0.0.1:1/vaults/kv1/keys/k/{v}?x=1"
        )))
        .as_deref(),
        Some(v)
    );
    assert_eq!(
        id_version(Some("https://kv1.vault.azure.net/secrets/db/../..")),
        None
    );
    assert_eq!(id_version(None), None);
}

#[test]
fn history_is_newest_first() {
    let info = |version: &str, created| VersionInfo {
        version: version.into(),
        created,
    };
    let sorted = newest_first(vec![
        info("c", 8),
        info("e", 6),
        info("b", 9),
        info("a", 10),
        info("d", 7),
    ]);
    let order: Vec<&str> = sorted.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(order, ["a", "b", "c", "d", "e"]);
    let same_second = newest_first(vec![
        info("old", 5),
        info("mid", 5),
        info("new", 5),
        info("older", 4),
    ]);
    let order: Vec<&str> = same_second.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(order, ["new", "mid", "old", "older"]);
}
