//! Black-box tests of the provider process itself: sockets, start-up, shutdown, and the two `:authority`
//! forms drivers send. No backend is involved.

#[path = "lifecycle/authority.rs"]
mod authority;
#[path = "lifecycle/shutdown.rs"]
mod shutdown;
#[path = "lifecycle/sockets.rs"]
mod sockets;
