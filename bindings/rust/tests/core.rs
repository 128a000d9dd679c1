//! Buffers, contexts and runtimes: every call, its errors, and what the
//! binding adds (Drop, Send + Sync, errors it raises itself).

mod common;

use std::sync::{Arc, Mutex};

use common::Fixture;
use gms::{
    AllocFlags, Backend, Buffer, Context, ErrorKind, Language, Level, LogLevel, Mode, OnCorruption, ReadOnly,
    Runtime, Safety, Stream, ViolationKind,
};

#[test]
fn alloc_write_read() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").user("alice").open().unwrap();
        let buf = ctx.alloc(4096).unwrap();
        assert_eq!((buf.len(), buf.is_empty()), (4096, false));
        buf.write(10, b"hello, gms").unwrap();
        let mut back = [0u8; 10];
        buf.read(10, &mut back).unwrap();
        assert_eq!(&back, b"hello, gms");
        buf.fill(0, 0xab, 4).unwrap();
        assert_eq!(&buf.to_vec().unwrap()[..4], &[0xab; 4]);
        assert!(buf.context() == &ctx);
        buf.free().unwrap();
    });
}

#[test]
fn zeroed_and_empty_buffers() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let buf = ctx.alloc_with(1000, AllocFlags::ZERO | AllocFlags::PAGES).unwrap();
        assert!(buf.to_vec().unwrap().iter().all(|&b| b == 0));
        let info = buf.info().unwrap();
        assert!(info.flags.contains(AllocFlags::ZERO) && info.flags.contains(AllocFlags::PAGES));
        assert_eq!(info.device_ptr % 4096, 0);
        let mut flags = AllocFlags::NONE;
        flags |= AllocFlags::ZERO;
        assert_eq!(flags.bits(), gms::sys::GMS_ALLOC_ZERO);
        // Zero-length accesses are valid, at the end too.
        buf.write(1000, &[]).unwrap();
        buf.read(1000, &mut []).unwrap();
    });
}

#[test]
fn bounds_are_checked_and_nothing_is_touched() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let buf = ctx.alloc_with(4096, AllocFlags::ZERO).unwrap();
        let e = buf.write(4090, b"hello, gms").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfBounds);
        assert_eq!(e.code(), gms::sys::GMS_E_OUT_OF_BOUNDS);
        assert!(e.message().contains("gms_write"), "{e}");
        assert!(e.to_string().contains("GMS_E_OUT_OF_BOUNDS"), "{e}");
        assert!(buf.to_vec().unwrap().iter().all(|&b| b == 0), "nothing written");
        let mut big = [0u8; 8];
        assert_eq!(buf.read(u64::MAX - 2, &mut big).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(buf.fill(4000, 1, 97).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(ctx.alloc(0).unwrap_err().kind(), ErrorKind::InvalidArg);
        assert_eq!(ctx.alloc(usize::MAX).unwrap_err().kind(), ErrorKind::NoMemory);
    });
}

#[test]
fn copy_between_buffers() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let a = ctx.alloc(64).unwrap();
        let b = ctx.alloc(64).unwrap();
        a.write(0, b"0123456789").unwrap();
        b.copy_from(5, &a, 0, 10).unwrap();
        a.copy_from(2, &a, 0, 8).unwrap(); // overlap
        let mut out = [0u8; 10];
        b.read(5, &mut out).unwrap();
        assert_eq!(&out, b"0123456789");
        a.read(0, &mut out).unwrap();
        assert_eq!(&out, b"0101234567");
        assert_eq!(b.copy_from(60, &a, 0, 10).unwrap_err().kind(), ErrorKind::OutOfBounds);
        // Another context's buffer cannot be a source.
        let other = rt.context("globex").open().unwrap();
        let theirs = other.alloc(64).unwrap();
        assert!(b.copy_from(0, &theirs, 0, 1).is_err());
    });
}

#[test]
fn stale_handles_are_refused() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let buf = ctx.alloc(64).unwrap();
        let raw = buf.handle();
        buf.free().unwrap();
        // The handle is dead: adopting it is refused, and so is a forged one.
        let e = Buffer::<ReadOnly>::from_raw(&ctx, raw).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle);
        assert!(e.message().contains("freed") || e.message().contains("stale"), "{e}");
        assert_eq!(Buffer::<ReadOnly>::from_raw(&ctx, 0).unwrap_err().kind(), ErrorKind::InvalidHandle);
        assert_eq!(
            Buffer::<ReadOnly>::from_raw(&ctx, raw ^ 0x40).unwrap_err().kind(),
            ErrorKind::InvalidHandle
        );
        // Another tenant's context cannot use the handle.
        let buf = ctx.alloc(64).unwrap();
        let other = rt.context("globex").open().unwrap();
        let e = Buffer::<ReadOnly>::from_raw(&other, buf.handle()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::InvalidHandle), "{e}");
    });
}

#[test]
fn raw_handles_round_trip_and_double_free_is_caught() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let raw = ctx.alloc(128).unwrap().into_raw();
        let again: Buffer = Buffer::from_raw(&ctx, raw).unwrap();
        assert_eq!((again.handle(), again.len()), (raw, 128));
        // A second owner of the same handle: the first free wins, the
        // second is refused without harm.
        let twin: Buffer = Buffer::from_raw(&ctx, raw).unwrap();
        again.free().unwrap();
        let e = twin.free().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle);
    });
}

#[test]
fn drop_frees_and_reports_what_it_cannot_return() {
    let fx = Fixture::new();
    let ctx = fx.rt.context("acme").open().unwrap();
    let before = fx.rt.stats().unwrap();
    {
        let _buf = ctx.alloc(100).unwrap();
        assert_eq!(fx.rt.stats().unwrap().live_blocks, before.live_blocks + 1);
    }
    assert_eq!(fx.rt.stats().unwrap().live_blocks, before.live_blocks);
    // A drop that fails (the handle was freed through a twin) goes to the log.
    let buf = ctx.alloc(100).unwrap();
    let twin: Buffer = Buffer::from_raw(&ctx, buf.handle()).unwrap();
    twin.free().unwrap();
    drop(buf);
    let lines = fx.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("dropping buffer") && l.contains("GMS_E_INVALID_HANDLE")),
        "{lines:?}"
    );
    fx.log.lock().unwrap().clear();
    drop(ctx);
    fx.assert_clean();
}

#[test]
fn context_close_reports_leaks() {
    // gms's own leak report, which every Fixture checks, really fires: a
    // handle given up with into_raw is reclaimed and reported at close.
    let fx = Fixture::new();
    let ctx = fx.rt.context("acme").open().unwrap();
    let _ = ctx.alloc(300).unwrap().into_raw();
    drop(ctx);
    let s = fx.rt.stats().unwrap();
    assert_eq!((s.leaked_blocks, s.live_blocks), (1, 0));
    let log = fx.log.lock().unwrap();
    assert!(log.iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("leak")), "{log:?}");
}

#[test]
fn buffers_keep_their_context_and_runtime_open() {
    let fx = Fixture::new();
    let buf = {
        let ctx = fx.rt.context("acme").open().unwrap();
        ctx.alloc(64).unwrap()
    };
    // The context has no handle left but the buffer's: still open.
    assert_eq!(fx.rt.stats().unwrap().contexts, 1);
    buf.write(0, b"still here").unwrap();
    drop(buf);
    fx.assert_clean();
}

#[test]
fn info_describes_the_buffer() {
    Fixture::run(|rt| {
        let ctx = rt
            .context("acme")
            .user("alice")
            .level(Level::Confidential)
            .language(Language::Zig)
            .open()
            .unwrap();
        let buf = ctx.alloc(1000).unwrap();
        let i = buf.info().unwrap();
        assert_eq!((i.size, i.tenant.as_str(), i.user.as_str()), (1000, "acme", "alice"));
        assert_eq!(
            (i.level, i.language, i.access),
            (Some(Level::Confidential), Some(Language::Zig), Some(Mode::ReadWrite))
        );
        assert!(i.block_size >= 1000 && i.holders == 1 && i.share_id.is_none() && !i.immutable);
        assert_eq!(buf.as_ptr().unwrap() as u64, i.device_ptr);
        assert_eq!(buf.as_mut_ptr().unwrap() as u64, i.device_ptr);
        assert!(i.pool_id != 0);
    });
}

#[test]
fn raw_pointer_overflow_is_reported() {
    let fx = Fixture::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    fx.rt.on_violation(move |v| s.lock().unwrap().push(v.clone())).unwrap();
    let ctx = fx.rt.context("acme").open().unwrap();
    let buf = ctx.alloc(100).unwrap();
    let p = buf.as_mut_ptr().unwrap();
    // SAFETY: the redzone after the buffer is mapped memory of the pool
    // (safety on); writing it is the bug gms must catch.
    unsafe {
        for i in 0..4 {
            *p.add(100 + i) ^= 0xff;
        }
    }
    let e = buf.free().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corruption);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].kind, seen[0].offset, seen[0].size), (Some(ViolationKind::Overflow), 100, 100));
    assert_eq!(seen[0].tenant, "acme");
    assert!(!seen[0].message.is_empty());
    drop(ctx);
    assert!(fx.log_lines().iter().any(|l| l.contains("overflow") || l.contains("redzone")));
}

#[test]
fn names_are_checked() {
    Fixture::run(|rt| {
        let e = rt.context("ac\0me").open().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArg);
        assert!(e.message().contains("NUL"), "{e}");
        let e = rt.context(&"x".repeat(64)).open().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArg);
        assert!(e.message().contains("longer"), "{e}");
        assert_eq!(rt.context("").open().unwrap_err().kind(), ErrorKind::InvalidArg);
        assert_eq!(rt.context("acme").user("b\tob").open().unwrap_err().kind(), ErrorKind::InvalidArg);
        assert_eq!(rt.set_quota("a\0", None, None).unwrap_err().kind(), ErrorKind::InvalidArg);
    });
}

#[test]
fn quotas_refuse_and_count() {
    Fixture::run(|rt| {
        rt.set_quota("small", Some(1 << 20), Some(2)).unwrap();
        let ctx = rt.context("small").open().unwrap();
        let a = ctx.alloc(1000).unwrap();
        let b = ctx.alloc(1000).unwrap();
        let e = ctx.alloc(1000).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Quota);
        assert!(e.message().contains("small"), "{e}");
        assert_eq!(ctx.alloc(2 << 20).unwrap_err().kind(), ErrorKind::Quota);
        let t = rt.tenant_stats().unwrap().into_iter().find(|t| t.tenant == "small").unwrap();
        assert_eq!((t.live_blocks, t.max_bytes, t.max_allocs), (2, Some(1 << 20), Some(2)));
        assert!(t.quota_refusals >= 2 && rt.stats().unwrap().quota_refusals >= 2);
        rt.set_quota("small", None, None).unwrap();
        let t = rt.tenant_stats_at(0).unwrap();
        assert_eq!((t.max_bytes, t.max_allocs), (None, None));
        let c = ctx.alloc(1000).unwrap();
        drop((a, b, c));
        assert_eq!(rt.tenant_stats_at(99).unwrap_err().kind(), ErrorKind::InvalidArg);
    });
}

#[test]
fn runtime_calls() {
    Fixture::run(|rt| {
        assert_eq!(rt.backend(), Backend::Host);
        assert!(!rt.is_shared() && !rt.as_ptr().is_null());
        let ctx = rt.context("acme").open().unwrap();
        assert_eq!(ctx.runtime().as_ptr(), rt.as_ptr());
        let buf = ctx.alloc(1 << 16).unwrap();
        let s = rt.stats().unwrap();
        assert!(s.live_blocks == 1 && s.live_bytes >= 1 << 16 && s.allocs >= 1 && s.contexts == 1);
        assert!(s.held_bytes > 0 && s.pools == 1 && s.tenants == 1);
        let r = rt.verify().unwrap();
        assert!(r.live_blocks == 1 && r.pools == 1 && r.live_handles == 1 && r.chunks >= 1, "{r:?}");
        rt.trim().unwrap();
        rt.sync().unwrap();
        assert_eq!(rt.audit_flush().unwrap_err().kind(), ErrorKind::Unsupported);
        drop(buf);
        assert_eq!(rt.stats().unwrap().frees, s.frees + 1);
    });
}

#[test]
fn verify_finds_corruption() {
    let fx = Fixture::new();
    let seen = Arc::new(Mutex::new(0));
    let s = Arc::clone(&seen);
    fx.rt.on_violation(move |_| *s.lock().unwrap() += 1).unwrap();
    let ctx = fx.rt.context("acme").open().unwrap();
    let buf = ctx.alloc(64).unwrap();
    let p = buf.as_mut_ptr().unwrap();
    // SAFETY: the first redzone bytes are mapped pool memory.
    unsafe { *p.add(64) ^= 0xff };
    let e = fx.rt.verify().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corruption);
    assert!(e.message().contains("violation"), "{e}");
    assert_eq!(*seen.lock().unwrap(), 1);
    // The next call on the buffer says so once, then the buffer works.
    assert_eq!(buf.to_vec().unwrap_err().kind(), ErrorKind::Corruption);
    buf.free().unwrap();
}

#[test]
fn runtime_options() {
    let dir = std::env::temp_dir().join(format!("gms-rust-audit-{}", std::process::id()));
    let rt = Runtime::builder()
        .backend(Backend::Host)
        .device(0)
        .granule_bytes(1 << 16)
        .chunk_bytes(1 << 30)
        .retain_bytes(0)
        .safety(Safety::Off)
        .redzone_bytes(64)
        .quarantine_bytes(1 << 20)
        .quarantine_blocks(16)
        .verify_interval_ms(0)
        .on_corruption(OnCorruption::Report)
        .secret_multipass(true)
        .max_held_bytes(1 << 24)
        .audit_dir(&dir)
        .audit_key(vec![7; 32])
        .audit_lossy(false)
        .audit_segment_bytes(1 << 20)
        .audit_retention_days(1)
        .open()
        .unwrap();
    let ctx = rt.context("acme").open().unwrap();
    let buf = ctx.alloc(100).unwrap();
    // Safety off: no redzone, so the block is just the rounded size.
    assert_eq!(buf.info().unwrap().block_size, 256);
    assert_eq!(ctx.alloc(32 << 20).unwrap_err().kind(), ErrorKind::NoMemory); // max_held_bytes
    drop((buf, ctx));
    rt.audit_flush().unwrap();
    drop(rt);
    assert!(std::fs::read_dir(&dir).unwrap().next().is_some(), "a trail was written");
    std::fs::remove_dir_all(&dir).unwrap();

    // Options libgms refuses.
    let e = Runtime::builder().backend(Backend::Host).granule_bytes(1000).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArg);
    let e = Runtime::builder().backend(Backend::Host).audit_dir("/nonexistent\0x").open().unwrap_err();
    assert!(e.message().contains("NUL"));
    let e = Runtime::builder().backend(Backend::Host).audit_dir(&dir).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArg, "{e}"); // a trail needs a key
    let e =
        Runtime::builder().backend(Backend::Host).audit_dir(&dir).audit_key_file("/nonexistent/key").open();
    assert!(e.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shared_runtime_is_one() {
    let a = Runtime::shared().unwrap();
    let b = Runtime::shared().unwrap();
    assert!(a.is_shared() && a.as_ptr() == b.as_ptr());
    // Callbacks on the shared runtime are kept for the process.
    a.on_violation(|_| {}).unwrap();
    a.on_pressure(|_| {}).unwrap();
    drop(a);
    let ctx = b.context("acme").open().unwrap();
    ctx.alloc(10).unwrap().free().unwrap();
}

#[test]
fn pressure_callbacks_run_and_can_free() {
    let fx = Fixture::new();
    fx.rt.set_quota("tight", Some(64 << 10), None).unwrap();
    let ctx = fx.rt.context("tight").open().unwrap();
    let cache: Arc<Mutex<Vec<Buffer>>> = Arc::default();
    for _ in 0..3 {
        cache.lock().unwrap().push(ctx.alloc(16 << 10).unwrap());
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (c, k) = (Arc::clone(&calls), Arc::clone(&cache));
    fx.rt
        .on_pressure(move |p| {
            c.lock().unwrap().push(p.clone());
            k.lock().unwrap().clear(); // frees the cache's buffers from inside the callback
        })
        .unwrap();
    let big = ctx.alloc(40 << 10).unwrap(); // fits only once the cache is gone
    let calls = calls.lock().unwrap();
    assert!(!calls.is_empty());
    assert_eq!(
        (calls[0].tenant.as_str(), calls[0].bytes_wanted, calls[0].reason),
        ("tight", 40 << 10, ErrorKind::Quota)
    );
    let s = fx.rt.stats().unwrap();
    assert!(s.pressure_events >= 1 && s.pressure_recovered >= 1);
    drop((big, ctx));
    fx.assert_clean();
}

#[test]
fn stream_ordered_calls() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let buf = ctx.alloc_async(4096, AllocFlags::ZERO, Stream::DEFAULT).unwrap();
        buf.write(0, b"async").unwrap();
        assert!(Stream::default().as_raw().is_null());
        // SAFETY: NULL is the legacy default stream.
        let null = unsafe { Stream::from_raw(std::ptr::null_mut()) };
        assert_eq!(null, Stream::DEFAULT);
        buf.free_async(Stream::DEFAULT).unwrap();
        let e = ctx.alloc_async(16, AllocFlags::from_bits(1 << 30), Stream::DEFAULT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArg);
        rt.sync().unwrap();
    });
}

#[test]
fn one_context_from_many_threads() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let ctx = &ctx;
                s.spawn(move || {
                    for i in 0..200u32 {
                        let buf = ctx.alloc(64 + i as usize).unwrap();
                        buf.fill(0, t, buf.len()).unwrap();
                        assert!(buf.to_vec().unwrap().iter().all(|&b| b == t));
                    }
                });
            }
        });
        // A buffer moves to another thread, and is freed there.
        let buf = ctx.alloc(64).unwrap();
        let ctx2 = ctx.clone();
        std::thread::spawn(move || {
            buf.write(0, b"moved").unwrap();
            assert!(buf.context() == &ctx2);
        })
        .join()
        .unwrap();
    });
}

#[test]
fn thread_safety_is_declared() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Runtime>();
    send_sync::<Context>();
    send_sync::<Buffer>();
    send_sync::<Buffer<ReadOnly>>();
    send_sync::<gms::Error>();
    send_sync::<Stream>();
}

#[test]
fn library_facts() {
    assert!(gms::version() >= gms::HEADER_VERSION);
    assert!(gms::strerror(-5).starts_with("GMS_E_QUOTA: "));
    assert_eq!(Level::Secret.name(), "secret");
    assert_eq!(Language::Rust.to_string(), "rust");
    assert_eq!(Level::Public.to_string(), "public");
    for code in -11..=-1 {
        assert_ne!(ErrorKind::from_code(code), ErrorKind::Unknown);
    }
    assert_eq!(ErrorKind::from_code(-99), ErrorKind::Unknown);
    assert_eq!(Backend::from_raw(2), Some(Backend::Cuda));
    assert_eq!(Backend::from_raw(42), None);
    assert_eq!(LogLevel::Warn.to_raw(), gms::sys::GMS_LOG_WARN);
}
