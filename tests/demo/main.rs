//! The demo: its router end to end in process on every backend, the real binary as a process,
//! and several demo processes sharing one store.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod demo_bearer;
mod demo_e2e;
mod demo_instances;
mod demo_metrics;
mod demo_process;
mod demo_server_limits;
mod demo_throttle;
