// Test code may panic on setup failures: that is how a test reports them.
#![allow(clippy::unwrap_used)]

//! Integration tests: one binary, a module per area, real engines over real connections.
//! SQLite always runs; MariaDB and PostgreSQL run when `scripts/test` has started them (it
//! exports `LB_TEST_MARIADB_ODBC` / `LB_TEST_POSTGRES_ODBC` and `LB_REQUIRE_ENGINES=1`, which
//! turns a missing engine into a failure instead of a skip).

mod suite;
