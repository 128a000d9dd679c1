//! The hand-written declarations of `gms::sys` against the C compiler: the
//! size of every struct and the offset of every field, and the value of
//! every constant, as `cc` sees include/gms.h. (The repository's header
//! checker compares function signatures too.)

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use gms::sys::*;

macro_rules! layouts {
    ($($ty:ident { $($field:ident),* })*) => {{
        let mut rust = Vec::new();
        $(
            rust.push((format!("sizeof {}", stringify!($ty)), size_of::<$ty>() as i64));
            $(rust.push((format!("offsetof {}.{}", stringify!($ty), stringify!($field)), offset_of!($ty, $field) as i64));)*
        )*
        rust
    }};
}

macro_rules! constants {
    ($($name:ident),*) => { vec![$((format!("const {}", stringify!($name)), $name as i64)),*] };
}

#[test]
fn layouts_and_constants_match_the_header() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !root.join("include/gms.h").exists() {
        eprintln!("SKIP: no include/gms.h next to the crate");
        return;
    }
    let mut want = layouts! {
        gms_runtime_options { version, backend, device, granule_bytes, chunk_bytes, retain_bytes, log, log_user,
            reserved, audit_dir, audit_key, audit_key_len, audit_key_file, audit_lossy, audit_segment_bytes,
            audit_retention_days, safety, redzone_bytes, quarantine_bytes, quarantine_blocks, scrub_batch,
            verify_interval_ms, on_corruption, secret_multipass, max_held_bytes, broker }
        gms_context_desc { version, tenant, user, level, language }
        gms_buf_info { size, block_size, device_ptr, pool_id, flags, level, language, tenant, user, access,
            holders, share_id, immutable, read_only_view }
        gms_share_grant { tenant, user, language, mode }
        gms_share_desc { version, grants, ngrants, immutable }
        gms_pressure { tenant, bytes_wanted, reason }
        gms_stats { live_bytes, live_blocks, peak_live_bytes, held_bytes, peak_held_bytes, reserved_bytes,
            fragmentation, allocs, frees, quota_refusals, leaked_blocks, leaked_bytes, pools, contexts, tenants,
            shares, pressure_events, pressure_recovered, pressure_steps, maps, unmaps, device_waits }
        gms_tenant_stats { tenant, live_bytes, live_blocks, peak_live_bytes, held_bytes, max_bytes, max_allocs,
            quota_refusals, leaked_blocks, leaked_bytes }
        gms_report { pools, chunks, live_blocks, free_blocks, live_handles, violations, first_violation }
        gms_violation { kind, tenant, handle, address, offset, size, message }
        gms_testing_options { fail_nth_call }
    };
    want.extend(constants!(
        GMS_VERSION,
        GMS_E_INVALID_ARG,
        GMS_E_INVALID_HANDLE,
        GMS_E_ACCESS_DENIED,
        GMS_E_OUT_OF_BOUNDS,
        GMS_E_QUOTA,
        GMS_E_NO_MEMORY,
        GMS_E_READ_ONLY,
        GMS_E_CORRUPTION,
        GMS_E_BACKEND,
        GMS_E_UNSUPPORTED,
        GMS_E_BUSY,
        GMS_BACKEND_HIP,
        GMS_LOG_INFO,
        GMS_SAFETY_OFF,
        GMS_ON_CORRUPTION_ABORT,
        GMS_RUNTIME_OPTIONS_VERSION,
        GMS_LEVEL_SECRET,
        GMS_LANG_OTHER,
        GMS_LANG_PYTHON,
        GMS_NAME_MAX,
        GMS_CONTEXT_DESC_VERSION,
        GMS_ALIGNMENT,
        GMS_ALLOC_ZERO,
        GMS_ALLOC_PAGES,
        GMS_ACCESS_READ_WRITE,
        GMS_ANY_LANGUAGE,
        GMS_SHARE_GRANTS_MAX,
        GMS_SHARE_DESC_VERSION,
        GMS_VIOLATION_IMMUTABLE_WRITE,
        GMS_AUDIT_DROPPED,
        GMS_BUF_NULL
    ));
    // One printf per entry, written from the names alone.
    let mut c = String::from(
        "#include <gms.h>\n#include <gms/testing.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void) {\n",
    );
    for (what, _) in &want {
        let expr = if let Some(t) = what.strip_prefix("sizeof ") {
            format!("(long long)sizeof({t})")
        } else if let Some(f) = what.strip_prefix("offsetof ") {
            let (t, field) = f.split_once('.').unwrap();
            format!("(long long)offsetof({t}, {field})")
        } else {
            format!("(long long){}", what.strip_prefix("const ").unwrap())
        };
        c.push_str(&format!("    printf(\"{what} %lld\\n\", {expr});\n"));
    }
    c.push_str("    return 0;\n}\n");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("abi.c"), c).unwrap();
    let exe = dir.join("abi");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg("-I")
        .arg(root.join("include"))
        .arg(dir.join("abi.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(status.success());
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let got: Vec<(String, i64)> = out
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(got.len(), want.len());
    let wrong: Vec<_> = want.iter().zip(&got).filter(|(w, g)| w != g).collect();
    assert!(wrong.is_empty(), "Rust vs C: {wrong:?}");
}
