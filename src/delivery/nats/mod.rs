//! JetStream sink (to be built).
