mod changes;
mod config_errors;
mod engines;
mod harness;
mod openapi;
mod proxy;
mod recovery;
mod rest;
