//! Every error path of a realistic sequence of calls, driven by gms's
//! `fail_nth_call` (the twin of a failing allocator): the Nth fallible
//! operation inside libgms fails, for N = 1, 2, ... until the sequence
//! runs through. Each failure must come back as an `Err` with a known kind
//! and a message, and leave nothing behind: no leak, no broken invariant,
//! no failed drop.

mod common;

use std::sync::{Arc, Mutex};

use gms::{ErrorKind, Grant, Language, Runtime, testing};

fn sequence(rt: &Runtime) -> gms::Result<Vec<u8>> {
    let a = rt.context("acme").user("alice").open()?;
    let b = rt.context("globex").language(Language::Python).open()?;
    rt.set_quota("globex", Some(1 << 20), None)?;
    let buf = a.alloc(5000)?;
    buf.write(0, b"data")?;
    let id = buf.share(&[Grant::read().tenant("globex")])?;
    let theirs = b.acquire(id)?;
    let out = theirs.to_vec()?;
    theirs.release()?;
    let (_, frozen) = a.alloc_with(1 << 16, gms::AllocFlags::PAGES)?.share_immutable(&[Grant::read()])?;
    frozen.to_vec()?;
    let moved = a.alloc(3000)?.transfer(&b)?; // to another tenant: a copy
    moved.write(0, b"moved")?;
    let big = b.alloc(300 << 10)?;
    big.fill(0, 1, big.len())?;
    rt.verify()?;
    rt.tenant_stats()?;
    Ok(out)
}

#[test]
fn every_failure_is_an_error_and_leaves_nothing_behind() {
    let mut failures = Vec::new();
    let mut n = 1;
    loop {
        let log = Arc::new(Mutex::new(Vec::new()));
        let rt = match testing::open_failing(common::builder(&log), n) {
            Ok(rt) => rt,
            Err(e) => {
                failures.push((n, "open", e));
                n += 1;
                continue;
            }
        };
        let result = sequence(&rt);
        let s = rt.stats().unwrap();
        assert_eq!((s.live_blocks, s.leaked_blocks, s.contexts), (0, 0, 0), "fail_nth_call={n}: {s:?}");
        rt.verify().unwrap_or_else(|e| panic!("fail_nth_call={n}: {e}"));
        let lines = log.lock().unwrap().clone();
        assert!(!lines.iter().any(|(_, m)| m.contains("dropping buffer")), "fail_nth_call={n}: {lines:?}");
        match result {
            Ok(out) => {
                assert_eq!(&out[..4], b"data");
                break;
            }
            Err(e) => failures.push((n, "sequence", e)),
        }
        n += 1;
        assert!(n < 2000, "the sequence never ran through");
    }
    for (n, stage, e) in &failures {
        assert!(
            matches!(e.kind(), ErrorKind::NoMemory | ErrorKind::Backend),
            "fail_nth_call={n} ({stage}): unexpected {e}"
        );
        assert!(!e.message().is_empty(), "fail_nth_call={n}: no message");
    }
    assert!(failures.iter().any(|f| f.1 == "open") && failures.iter().any(|f| f.1 == "sequence"));
    for (n, stage, e) in &failures {
        eprintln!("fail_nth_call={n} ({stage}): {e}");
    }
}

#[test]
fn testing_knobs() {
    testing::audit_clock_skew(1_000_000);
    testing::audit_clock_skew(0);
    assert_eq!(testing::audit_ring_slots(3).unwrap_err().kind(), ErrorKind::InvalidArg);
    testing::audit_ring_slots(0).unwrap();
}
