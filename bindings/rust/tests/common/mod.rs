//! What every test file shares: a private host-backend runtime whose log is
//! captured, and a check at its end that nothing leaked.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use gms::{Backend, LogLevel, Runtime, RuntimeBuilder};

/// A private runtime and the log lines it wrote.
pub struct Fixture {
    pub rt: Runtime,
    pub log: Arc<Mutex<Vec<(LogLevel, String)>>>,
}

pub fn builder(log: &Arc<Mutex<Vec<(LogLevel, String)>>>) -> RuntimeBuilder {
    let log = Arc::clone(log);
    Runtime::builder()
        .backend(Backend::Host)
        .log(move |level, msg| log.lock().unwrap().push((level, msg.to_owned())))
}

impl Fixture {
    pub fn new() -> Fixture {
        let log = Arc::default();
        let rt = builder(&log).open().expect("open a private host runtime");
        Fixture { rt, log }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
    }

    /// Runs `f`, then checks that every buffer and context it made is gone
    /// and that gms reported no leak, no corruption and no failed drop.
    pub fn run(f: impl FnOnce(&Runtime)) {
        let fx = Fixture::new();
        f(&fx.rt);
        fx.assert_clean();
    }

    pub fn assert_clean(&self) {
        let s = self.rt.stats().unwrap();
        assert_eq!((s.live_blocks, s.leaked_blocks, s.contexts), (0, 0, 0), "{s:?}");
        self.rt.verify().unwrap();
        assert!(self.log_lines().is_empty(), "log: {:?}", self.log_lines());
    }
}
