use super::*;

#[test]
fn retry_after_is_read_and_capped() {
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().expect("header"));
        }
        map
    };
    assert_eq!(
        retry_after(&headers(&[("retry-after", "2")])),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after", "86400")])),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after-ms", "150"), ("retry-after", "9")])),
        Some(Duration::from_millis(150))
    );
    assert_eq!(
        retry_after(&headers(&[(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT"
        )])),
        Some(Duration::ZERO)
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after", "soon")])),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after(&headers(&[])), None);
    assert!(httpdate("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
}
