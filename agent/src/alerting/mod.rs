//! Alerting: what is sent to receivers. (Routing, grouping, silences and
//! inhibition arrive with the dispatcher.)

pub mod message;
