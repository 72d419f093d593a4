//! PostgreSQL replica sink (to be built).
