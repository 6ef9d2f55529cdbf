use super::*;

#[test]
fn placeholder_until_material() {
    assert!(pem("X", b"a").starts_with("-----BEGIN X-----\n"));
}
