//! Access windows and checked atomics (gms/access.h): a writer's window
//! keeps a second holder out, atomics return the old word at both widths,
//! and every refusal comes back as its ErrorKind.

mod common;

use common::Fixture;
use gms::{
    AllocFlags, Atomic, AtomicItem, AtomicOp, Buffer, Context, ErrorKind, Grant, Language, Mode, ReadOnly,
    Runtime, Stream,
};

const S: Stream = Stream::DEFAULT;

/// An owner's buffer shared read-write with a Python context, which
/// acquires it as `A`.
fn shared<A: gms::Access>(
    rt: &Runtime,
    acquire: fn(&Context, gms::ShareId) -> gms::Result<Buffer<A>>,
) -> (Buffer, Buffer<A>) {
    let owner = rt.context("acme").user("alice").open().unwrap();
    let other = rt.context("acme").user("bob").language(Language::Python).open().unwrap();
    let buf = owner.alloc_with(4096, AllocFlags::ZERO).unwrap();
    let id = buf.share(&[Grant::read_write()]).unwrap();
    let theirs = acquire(&other, id).unwrap();
    (buf, theirs)
}

#[test]
fn writer_window_keeps_a_second_holder_out() {
    Fixture::run(|rt| {
        let (buf, reader) = shared::<ReadOnly>(rt, Context::acquire);
        let w = buf.access(Mode::ReadWrite, S).unwrap();
        assert_eq!(w.mode(), Mode::ReadWrite);
        w.write(0, b"round 1").unwrap(); // the window derefs to its buffer
        let err = reader.try_access(Mode::Read, S).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
        let err = buf.try_access(Mode::Read, S).unwrap_err(); // one window per handle
        assert_eq!(err.kind(), ErrorKind::InvalidArg, "{err}");
        w.end().unwrap();

        // Readers together, after the writer's end.
        let r1 = reader.try_access(Mode::Read, S).unwrap();
        let r2 = buf.try_access(Mode::Read, S).unwrap();
        let mut got = [0u8; 7];
        r1.read(0, &mut got).unwrap();
        assert_eq!(&got, b"round 1");
        assert_eq!(buf.try_access(Mode::ReadWrite, S).unwrap_err().kind(), ErrorKind::InvalidArg);
        drop(r2);
        // A writer waits for the open reader: Busy without waiting.
        let other_writer = buf.try_access(Mode::ReadWrite, S).unwrap_err();
        assert_eq!(other_writer.kind(), ErrorKind::Busy);
        drop(r1); // Drop ends it
        drop(buf.try_access(Mode::ReadWrite, S).unwrap());

        // A reader may not open a write window; an atomic mode is no window.
        assert_eq!(reader.access(Mode::ReadWrite, S).unwrap_err().kind(), ErrorKind::ReadOnly);
        assert_eq!(buf.access(Mode::Atomic, S).unwrap_err().kind(), ErrorKind::InvalidArg);
        reader.release().unwrap();
        buf.free().unwrap();
    });
}

#[test]
fn a_waiting_reader_sees_the_whole_write() {
    Fixture::run(|rt| {
        let (buf, reader) = shared::<ReadOnly>(rt, Context::acquire);
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let w = buf.access(Mode::ReadWrite, S).unwrap();
            s.spawn(|| {
                opened_tx.send(()).unwrap();
                let r = reader.access(Mode::Read, S).unwrap(); // waits for the writer's end
                let mut got = [0u8; 512];
                r.read(0, &mut got).unwrap();
                assert!(got.iter().all(|&b| b == 7), "a torn read");
            });
            opened_rx.recv().unwrap();
            for i in 0..8 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                w.fill(i * 64, 7, 64).unwrap();
            }
            w.end().unwrap();
        });
        drop(reader);
        drop(buf);
    });
}

#[test]
fn atomics_return_the_old_word() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let buf = ctx.alloc_with(64, AllocFlags::ZERO).unwrap();
        // 8-byte words.
        assert_eq!(buf.fetch_add(0, 5u64).unwrap(), 0);
        assert_eq!(buf.fetch_add(0, 2u64).unwrap(), 5);
        assert_eq!(buf.fetch_max(0, 3u64).unwrap(), 7);
        assert_eq!(buf.fetch_min(0, 3u64).unwrap(), 7);
        assert_eq!(buf.compare_exchange(0, 3u64, 10).unwrap(), Ok(3));
        assert_eq!(buf.compare_exchange(0, 3u64, 11).unwrap(), Err(10));
        assert_eq!(buf.swap(8, -1i64).unwrap(), 0);
        assert_eq!(buf.fetch_min(8, 4i64).unwrap(), -1); // signed: -1 stays
        assert_eq!(buf.fetch_max(8, 4i64).unwrap(), -1);
        assert_eq!(buf.fetch_min(8, u64::MAX).unwrap(), 4); // unsigned: 4 stays
        // 4-byte words, next to each other.
        assert_eq!(buf.fetch_add(16, u32::MAX).unwrap(), 0);
        assert_eq!(buf.fetch_add(16, 2u32).unwrap(), u32::MAX); // wraps to 1
        assert_eq!(buf.fetch_or(20, 0xF0u32).unwrap(), 0);
        assert_eq!(buf.fetch_xor(20, 0xFFu32).unwrap(), 0xF0);
        assert_eq!(buf.fetch_and(20, 0x3Cu32).unwrap(), 0x0F);
        assert_eq!(buf.fetch_min(24, -5i32).unwrap(), 0);
        assert_eq!(buf.fetch_max(24, -9i32).unwrap(), -5);
        assert_eq!(buf.fetch_max(24, 3u32).unwrap(), -5i32 as u32); // unsigned: stays
        assert_eq!(buf.swap(28, 9u32).unwrap(), 0);
        assert_eq!(buf.compare_exchange(28, 9u32, 1).unwrap(), Ok(9));
        assert_eq!(buf.compare_exchange(28, 9u32, 2).unwrap(), Err(1));
        buf.atomic_queued(AtomicOp::Add, 32, 40u64, 0, S).unwrap();
        let mut words = [0u8; 40];
        buf.read(0, &mut words).unwrap();
        let u64_at = |o: usize| u64::from_le_bytes(words[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(words[o..o + 4].try_into().unwrap());
        assert_eq!((u64_at(0), u64_at(8) as i64, u64_at(32)), (10, 4, 40));
        assert_eq!((u32_at(16), u32_at(20), u32_at(24) as i32, u32_at(28)), (1, 0x0C, -5, 1));

        // A batch: old values into a results buffer.
        let results = ctx.alloc_with(32, AllocFlags::ZERO).unwrap();
        let items = [
            AtomicItem::new(AtomicOp::Add, 0, 1u64),
            AtomicItem::compare_exchange(8, 4i64, 7),
            AtomicItem::new(AtomicOp::Or, 20, 1u32),
        ];
        buf.atomic_batch(&items, Some((&results, 8)), S).unwrap();
        let mut res = [0u8; 32];
        results.read(0, &mut res).unwrap();
        let at = |o: usize| u64::from_le_bytes(res[o..o + 8].try_into().unwrap());
        assert_eq!((at(0), at(8), at(16), at(24)), (0, 10, 4, 0x0C));
        assert_eq!(buf.fetch_add(0, 0u64).unwrap(), 11);
        assert_eq!(buf.fetch_add(8, 0i64).unwrap(), 7);
    });
}

#[test]
fn atomic_refusals() {
    Fixture::run(|rt| {
        let ctx = rt.context("acme").open().unwrap();
        let buf = ctx.alloc_with(64, AllocFlags::ZERO).unwrap();
        buf.write(0, &[1; 64]).unwrap();
        let e = buf.fetch_add(4, 1u64).unwrap_err(); // misaligned for 8 bytes
        assert_eq!(e.kind(), ErrorKind::InvalidArg, "{e}");
        assert_eq!(buf.fetch_add(2, 1u32).unwrap_err().kind(), ErrorKind::InvalidArg);
        assert_eq!(buf.fetch_add(64, 1u64).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(buf.swap(64, 1u32).unwrap_err().kind(), ErrorKind::OutOfBounds);
        let bad = [AtomicItem::new(AtomicOp::Add, 0, 1u64), AtomicItem::new(AtomicOp::Add, 3, 1u32)];
        assert_eq!(buf.atomic_batch(&bad, None, S).unwrap_err().kind(), ErrorKind::InvalidArg);
        assert_eq!(buf.to_vec().unwrap(), vec![1; 64]); // nothing changed

        // An atomic holder counts beside the writer, but may not write.
        let (owner_buf, counter) = shared::<Atomic>(rt, Context::acquire_atomic);
        assert_eq!(counter.info().unwrap().access, Some(Mode::Atomic));
        assert_eq!(counter.fetch_add(0, 2u64).unwrap(), 0);
        assert_eq!(owner_buf.fetch_add(0, 1u64).unwrap(), 2);
        assert_eq!(counter.access(Mode::ReadWrite, S).unwrap_err().kind(), ErrorKind::ReadOnly);
        drop(counter.try_access(Mode::Read, S).unwrap());

        // A read-only holder cannot be made an atomic one.
        let reader_ctx = rt.context("acme").user("carol").open().unwrap();
        let id = owner_buf.info().unwrap().share_id.unwrap();
        let reader = reader_ctx.acquire(id).unwrap();
        let e = Buffer::<Atomic>::from_raw(&reader_ctx, reader.handle()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
        drop(reader);

        // An immutable share has no atomic holders, its owner included.
        let frozen = ctx.alloc_with(64, AllocFlags::ZERO).unwrap();
        let (id, _view) = frozen.share_immutable(&[Grant::read_write()]).unwrap();
        let e = reader_ctx.acquire_atomic(id).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
    });
}
