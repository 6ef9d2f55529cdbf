//! The native socket's `backend: gcp`, and Courier's additions on `gcp.sock`: `expandKeys`, templates, `encoding`.

use courier_tests::calls::{assert_status, file_paths, mount, object_version, text};
use tonic::Code;

use crate::support::{case, sec};

#[tokio::test]
async fn native_socket_and_courier_additions() -> anyhow::Result<()> {
    let case = case("native").await?;
    case.secret("db", r#"{"username":"app","password":"pw"}"#).await?;
    case.secret("bin", "aGVsbG8=").await?;
    let provider = case.provider(&["gcp", "courier"]).await?;
    let secrets = [
        sec(&case.version("db", "1"), "db").field("expandKeys", "true"),
        sec(&case.version("bin", "1"), "hello").field("encoding", "base64"),
    ];
    let templates = "- path: url\n  template: \"postgres://{{ objects.db.username }}@db\"\n";

    for socket in ["gcp", "courier"] {
        let mut request = case.request(&secrets)?.parameter("templates", templates);
        if socket == "courier" {
            request = request.parameter("backend", "gcp");
        }
        let response = mount(&mut provider.client(socket).await?, request.build()?).await?;
        let mut paths = file_paths(&response);
        paths.sort();
        assert_eq!(paths, ["db/password", "db/username", "hello", "url"], "{socket}");
        assert_eq!(text(&response, "db/username"), "app");
        assert_eq!(text(&response, "hello"), "hello");
        assert_eq!(text(&response, "url"), "postgres://app@db");
        assert!(!object_version(&response, "hello").is_empty());
    }
    // Without `backend: gcp` the native socket reads Vault parameters.
    let result = mount(&mut provider.client("courier").await?, case.request(&secrets)?.build()?).await;
    assert_status(result, Code::InvalidArgument, &["roleName"]);
    Ok(())
}
