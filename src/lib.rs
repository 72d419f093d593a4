//! legacy-bridge: a documented REST API and a change-event feed in front of legacy ERP/POS
//! databases (and, later, file exports), without touching them.

pub mod api;
pub mod app;
pub mod auth;
pub mod capture;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod model;
pub mod resource;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod tls;
