//! Feeds bytes into the template renderer: the input up to the first NUL is the template source, the rest is the
//! content of the object `a` (also offered as JSON fields when it is a JSON object). Never a panic; the output is
//! bounded; an error never quotes the object's content.

#![no_main]

use courier_provider::testing::ObjectPath;
use courier_provider::testing::SecretBytes;
use courier_provider::testing::{TemplateSpec, render_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, content) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"{\"user\":\"QXZQXZQXZQXZQXZQXZ\"}"[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let Ok(path) = ObjectPath::parse("out") else {
        return;
    };
    let spec = TemplateSpec { index: 0, path, source: source.to_owned(), mode: None };
    let content = SecretBytes::new(content.to_vec());
    match render_all(std::slice::from_ref(&spec), &[("a".to_owned(), &content)]) {
        Ok(out) => assert!(out[0].len() <= 1024 * 1024),
        Err(e) => {
            // Only a long, distinctive content can be recognised in a message; the source may quote itself.
            let text = String::from_utf8_lossy(content.expose_secret()).into_owned();
            if text.len() >= 16 && !source.contains(&text) {
                assert!(!e.to_string().contains(&text), "the error quotes the content");
            }
        }
    }
});
