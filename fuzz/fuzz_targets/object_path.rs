//! Feeds bytes into `ObjectPath::parse`: never a panic, and an accepted path is safe to write.

#![no_main]

use courier_provider::testing::ObjectPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = ObjectPath::parse(raw) {
        let path = path.as_str();
        assert_eq!(path, raw);
        assert!(!path.is_empty() && path.len() <= 4096 && !path.starts_with('/'));
        assert!(!path.contains('\0') && !path.contains('\\'));
        assert!(path.split('/').all(|c| !c.is_empty() && c != "." && !c.starts_with("..") && c.len() <= 255));
    }
});
