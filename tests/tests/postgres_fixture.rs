//! The PostgreSQL fixture itself: it starts, takes real password logins, answers about roles, and is gone once
//! dropped. The database secrets engine tests build on all of this.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use courier_tests::postgres::Postgres;

#[tokio::test]
async fn postgres_fixture_takes_password_logins_and_stops_on_drop() -> anyhow::Result<()> {
    let postgres = Postgres::start().await?;
    let port = postgres.port();
    let data_dir = postgres.data_dir().to_path_buf();

    assert_eq!(
        postgres.connection_url_for_openbao(),
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres?sslmode=disable"
        )
    );

    let superuser = postgres.superuser().to_owned();
    let password = postgres.superuser_password().to_owned();
    assert!(
        password.len() >= 16,
        "the generated password is too short to mean anything: {password:?}"
    );
    assert!(
        postgres.can_login(&superuser, &password).await?,
        "the superuser cannot log in; log:\n{}",
        postgres.logs()
    );
    assert!(
        !postgres.can_login(&superuser, "not-the-password").await?,
        "a wrong password logged in"
    );
    assert!(
        !postgres.can_login("nope", &password).await?,
        "an unknown role logged in"
    );
    assert!(
        postgres.logs().contains(&format!(
            "password authentication failed for user \"{superuser}\""
        )),
        "the server did not log the refused login; log:\n{}",
        postgres.logs()
    );

    assert!(postgres.role_exists(&superuser).await?);
    assert!(!postgres.role_exists("nope").await?);
    assert!(
        !postgres.role_exists("it's").await?,
        "a quote in the name must not break the query"
    );

    // A role made the way OpenBao's database engine makes one logs in with its own password, until it is dropped.
    postgres
        .query("create role \"v-fixture\" with login password 'fixture-pw' valid until 'infinity'")
        .await?;
    assert!(postgres.role_exists("v-fixture").await?);
    assert!(postgres.can_login("v-fixture", "fixture-pw").await?);
    postgres.query("drop role \"v-fixture\"").await?;
    assert!(!postgres.can_login("v-fixture", "fixture-pw").await?);

    // The server listens on 127.0.0.1 and nowhere else.
    assert_eq!(
        postgres.query("show listen_addresses").await?.trim(),
        "127.0.0.1"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    drop(postgres);
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_err(),
        "port {port} still accepts connections after drop"
    );
    assert!(
        !data_dir.exists(),
        "{} survived the drop",
        data_dir.display()
    );
    Ok(())
}

#[tokio::test]
async fn postgres_fixtures_run_side_by_side() -> anyhow::Result<()> {
    let started = Instant::now();
    let (first, second) = tokio::try_join!(Postgres::start(), Postgres::start())?;
    assert_ne!(first.port(), second.port());
    assert_ne!(first.superuser_password(), second.superuser_password());
    assert!(
        !first
            .can_login(second.superuser(), second.superuser_password())
            .await?
    );
    assert!(
        second
            .can_login(second.superuser(), second.superuser_password())
            .await?
    );
    eprintln!("two clusters ready in {:?}", started.elapsed());
    Ok(())
}
