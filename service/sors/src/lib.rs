//! The sors service: the runtime that wires the Salesforce and ICWS clients to the routing
//! core, the status endpoints, the tenant wiring and the commands (`serve`, `check`). The test
//! bed, `demo` and `bench` live beside it in `sors-testbed` (fakes/testbed): nothing here
//! depends on a fake.

/// `println!` that never panics: when standard output is closed (`sors check | head -2`), the
/// line is dropped and the command goes on to its exit status.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that never panics on a closed standard output.
#[macro_export]
macro_rules! say_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

pub mod admin;
pub mod batcher;
pub mod check;
pub mod history;
pub mod http_server;
pub mod metrics;
pub mod runtime;
pub mod serve;
pub mod status;
pub mod wiring;
