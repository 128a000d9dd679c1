//! `RuntimeBuilder::broker`: `gms_runtime_options.broker`, gmsd's socket
//! (docs/broker.md). With a gmsd of the test's own (the one next to the
//! libgms under test, `$GMS_LIB_DIR/gmsd`): the runtime's memory comes from
//! gmsd, and the option wins over `GMS_BROKER`. Without one: the refusals,
//! each naming the option. One test function, alone in its binary, because
//! it sets `GMS_BROKER` (no other thread reads the environment meanwhile).

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gms::{Backend, ErrorKind, Runtime, sys};

fn backend_name(rt: &Runtime) -> String {
    // SAFETY: the runtime is open; the name is a static string.
    unsafe { CStr::from_ptr(sys::gms_runtime_backend_name(rt.as_ptr())) }.to_string_lossy().into_owned()
}

/// A gmsd on a socket in a fresh directory, stopped on drop.
struct Gmsd {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Gmsd {
    fn start() -> Option<Gmsd> {
        let exe = Path::new(&std::env::var_os("GMS_LIB_DIR")?).join("gmsd");
        if !exe.exists() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("gms-rust-gmsd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: getuid cannot fail.
        let uid = unsafe { getuid() };
        let policy = dir.join("policy.json");
        std::fs::write(&policy, format!(
            r#"{{"lease_bytes": 2097152, "tenants": [{{"name": "self", "uids": [{uid}], "quota_bytes": 8388608, "quota_leases": 4}}]}}"#
        ))
        .unwrap();
        let sock = dir.join("gmsd.sock");
        let child = Command::new(exe)
            .arg("--policy")
            .arg(&policy)
            .arg("--socket")
            .arg(&sock)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let g = Gmsd { child, dir, sock };
        let t0 = Instant::now();
        while !g.sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(5), "gmsd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(g)
    }
}

impl Drop for Gmsd {
    fn drop(&mut self) {
        // SAFETY: the pid is our child's, not yet waited for.
        unsafe { kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

unsafe extern "C" {
    fn getuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
}

fn set_variable(value: Option<&Path>) {
    // SAFETY: this binary's only test runs on one thread (see the top).
    unsafe {
        match value {
            Some(v) => std::env::set_var("GMS_BROKER", v),
            None => std::env::remove_var("GMS_BROKER"),
        }
    }
}

#[test]
fn broker_option() {
    set_variable(None);

    // Values libgms refuses, whether or not a gmsd runs.
    let e = Runtime::builder().broker("").open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArg);
    assert!(e.message().contains("gms_runtime_options.broker is \"\""), "{e}");
    let long = format!("/{}", "x".repeat(200));
    let e = Runtime::builder().broker(&long).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArg);
    assert!(e.message().contains("at most 107"), "{e}");
    let e = Runtime::builder().broker("/run/gms/gmsd.sock").backend(Backend::Hip).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArg);
    assert!(e.message().contains("never HIP"), "{e}");
    let e = Runtime::builder().broker("/run/gms\0/gmsd.sock").open().unwrap_err();
    assert!(e.message().contains("NUL"), "{e}");
    let e = Runtime::builder().broker("/nonexistent/gmsd.sock").open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(
        e.message().contains("gms_runtime_options.broker=/nonexistent/gmsd.sock: cannot connect to gmsd"),
        "{e}"
    );

    let Some(gmsd) = Gmsd::start() else {
        eprintln!("SKIP: the part with gmsd: no gmsd in $GMS_LIB_DIR");
        return;
    };
    let rt = Runtime::builder().broker(&gmsd.sock).open().unwrap();
    assert_eq!(backend_name(&rt), "broker");
    let ctx = rt.context("self").user("u").open().unwrap();
    let buf = ctx.alloc(4096).unwrap();
    buf.write(0, b"through gmsd").unwrap();
    let mut got = [0u8; 12];
    buf.read(0, &mut got).unwrap();
    assert_eq!(&got, b"through gmsd");
    drop((buf, ctx, rt));

    // The option wins over the variable, and does not fall back to it.
    set_variable(Some(Path::new("/nonexistent/by-the-variable.sock")));
    let rt = Runtime::builder().broker(&gmsd.sock).open().unwrap();
    assert_eq!(backend_name(&rt), "broker");
    drop(rt);
    set_variable(Some(&gmsd.sock));
    let e = Runtime::builder().broker("/nonexistent/by-the-option.sock").open().unwrap_err();
    assert!(e.message().contains("gms_runtime_options.broker=/nonexistent/by-the-option.sock"), "{e}");
    // Without the option, the variable applies.
    let rt = Runtime::builder().backend(Backend::Host).open().unwrap();
    assert_eq!(backend_name(&rt), "broker");
    drop(rt);
    set_variable(None);
    let rt = Runtime::builder().backend(Backend::Host).open().unwrap();
    assert_eq!(backend_name(&rt), "host");
}
