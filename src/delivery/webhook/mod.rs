//! Webhook sink (to be built).
