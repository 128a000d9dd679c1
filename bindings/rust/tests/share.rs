//! Shares, acquires, releases, transfers and revokes, and each refusal.

mod common;

use common::Fixture;
use gms::{Buffer, Context, ErrorKind, Grant, Language, Level, Mode, ReadOnly, Runtime, ShareId, Stream};

fn ctx(rt: &Runtime, tenant: &str, user: &str, language: Language) -> Context {
    rt.context(tenant).user(user).language(language).open().unwrap()
}

#[test]
fn read_share() {
    Fixture::run(|rt| {
        let owner = ctx(rt, "acme", "alice", Language::Rust);
        let _pad = owner.alloc(100).unwrap(); // so the buffer shares its first page
        let buf = owner.alloc(4096).unwrap();
        buf.write(0, b"weights").unwrap();
        let grants = [Grant::read().language(Language::Python), Grant::read().tenant("research").user("ann")];
        let id = buf.share(&grants).unwrap();
        assert_eq!(buf.info().unwrap().share_id, Some(id));
        assert_eq!(ShareId::from_raw(id.as_raw()), id);
        assert!(id.to_string().starts_with("0x"));
        let py = ctx(rt, "acme", "bob", Language::Python);
        let research = ctx(rt, "research", "ann", Language::Julia);
        let eve = ctx(rt, "research", "eve", Language::Julia);
        let a = py.acquire(id).unwrap();
        let b = research.acquire(id).unwrap();
        assert_eq!(a.len(), 4096);
        let mut got = [0u8; 7];
        a.read(0, &mut got).unwrap();
        assert_eq!(&got, b"weights");
        b.read(0, &mut got).unwrap();
        assert_eq!(&got, b"weights");
        let info = a.info().unwrap();
        assert_eq!((info.holders, info.access), (3, Some(Mode::Read)));
        assert!(a.handle() != buf.handle() && a.handle() != b.handle());
        assert_eq!(eve.acquire(id).unwrap_err().kind(), ErrorKind::AccessDenied); // no grant
        assert_eq!(research.acquire_mut(id).unwrap_err().kind(), ErrorKind::AccessDenied); // beyond it
        let forged = ShareId::from_raw(id.as_raw() ^ 0x1234);
        assert_eq!(eve.acquire(forged).unwrap_err().kind(), ErrorKind::InvalidHandle);
        assert_eq!(buf.share(&[Grant::read()]).unwrap_err().kind(), ErrorKind::Busy); // one share per buffer
        // A reader of another tenant gets no raw pointer (the block shares
        // its pages with neighbours).
        assert_eq!(b.as_ptr().unwrap_err().kind(), ErrorKind::AccessDenied);
        assert_eq!(b.info().unwrap().device_ptr, 0);
        assert_eq!(a.as_ptr().unwrap(), buf.as_ptr().unwrap()); // the owner's tenant: the memory
        let live = rt.stats().unwrap().live_blocks;
        a.release().unwrap();
        buf.free().unwrap(); // the owner goes first: the last holder keeps it alive
        b.read(0, &mut got).unwrap();
        assert_eq!(&got, b"weights");
        assert_eq!(rt.stats().unwrap().live_blocks, live);
        b.release().unwrap();
        assert_eq!(rt.stats().unwrap().live_blocks, live - 1);
    });
}

#[test]
fn share_refusals() {
    Fixture::run(|rt| {
        let owner = ctx(rt, "acme", "alice", Language::Rust);
        let buf = owner.alloc(64).unwrap();
        assert_eq!(buf.share(&[]).unwrap_err().kind(), ErrorKind::InvalidArg); // no grant
        let many = [Grant::read(); 17];
        assert_eq!(buf.share(&many).unwrap_err().kind(), ErrorKind::InvalidArg);
        let e = buf.share(&[Grant::read().user("a\0b")]).unwrap_err();
        assert!(e.kind() == ErrorKind::InvalidArg && e.message().contains("NUL"));
        // Refused share_immutable gives the buffer back, unchanged.
        let r = buf.share_immutable(&[]).unwrap_err();
        assert_eq!(r.error.kind(), ErrorKind::InvalidArg);
        assert!(format!("{r}").contains("GMS_E_INVALID_ARG") && format!("{r:?}").contains("Returned"));
        let buf = r.into_value();
        buf.write(0, b"still writable").unwrap();
        // `?` turns the refusal into a plain Error.
        let f = || -> gms::Result<()> {
            buf.share_immutable(&[])?;
            Ok(())
        };
        assert_eq!(f().unwrap_err().kind(), ErrorKind::InvalidArg);
    });
}

#[test]
fn one_writer_at_a_time() {
    Fixture::run(|rt| {
        let owner = ctx(rt, "acme", "alice", Language::Rust);
        let buf = owner.alloc(64).unwrap();
        let id = buf.share(&[Grant::read_write()]).unwrap();
        let w1 = ctx(rt, "acme", "w1", Language::C);
        let w2 = ctx(rt, "acme", "w2", Language::Nim);
        let reader = w2.acquire(id).unwrap(); // readers are never blocked
        assert_eq!(w1.acquire_mut(id).unwrap_err().kind(), ErrorKind::Busy); // the owner still writes
        buf.free().unwrap();
        let first = w1.acquire_mut(id).unwrap();
        first.write(0, b"mine").unwrap();
        assert_eq!(w2.acquire_mut(id).unwrap_err().kind(), ErrorKind::Busy);
        assert_eq!(&reader.to_vec().unwrap()[..4], b"mine");
        first.free().unwrap();
        let second = w2.acquire_mut(id).unwrap();
        second.write(0, b"next").unwrap();
        assert_eq!(&reader.to_vec().unwrap()[..4], b"next");
    });
}

#[test]
fn immutable_share() {
    Fixture::run(|rt| {
        let owner = ctx(rt, "acme", "alice", Language::Rust);
        let buf = owner.alloc(100).unwrap();
        buf.write(0, b"frozen").unwrap();
        let (id, frozen): (ShareId, Buffer<ReadOnly>) = buf.share_immutable(&[Grant::read()]).unwrap();
        let info = frozen.info().unwrap();
        assert!(info.immutable && info.access == Some(Mode::Read));
        let bob = ctx(rt, "acme", "bob", Language::Python);
        assert_eq!(bob.acquire_mut(id).unwrap_err().kind(), ErrorKind::ReadOnly);
        let mine = bob.acquire(id).unwrap();
        assert_eq!(&mine.to_vec().unwrap()[..6], b"frozen");
        // The owner's raw handle is read-only in libgms too: adopting it as
        // writable is refused, and a checked write through C is refused.
        assert_eq!(
            Buffer::<gms::ReadWrite>::from_raw(&owner, frozen.handle()).unwrap_err().kind(),
            ErrorKind::ReadOnly
        );
        // SAFETY: plain checked call with a valid context and a live handle.
        let rc = unsafe { gms::sys::gms_write(owner.as_ptr(), frozen.handle(), 0, b"x".as_ptr().cast(), 1) };
        assert_eq!(rc, gms::sys::GMS_E_READ_ONLY);
        mine.release().unwrap();
        frozen.free().unwrap();
    });
}

#[test]
fn immutable_page_share_is_a_read_only_mapping() {
    Fixture::run(|rt| {
        let owner = ctx(rt, "acme", "alice", Language::Rust);
        let buf = owner.alloc_with(1 << 16, gms::AllocFlags::PAGES).unwrap();
        let before = buf.as_ptr().unwrap();
        let (_, frozen) = buf.share_immutable(&[Grant::read()]).unwrap();
        let info = frozen.info().unwrap();
        assert!(info.read_only_view);
        assert_eq!(frozen.as_ptr().unwrap() as u64, info.device_ptr);
        assert_ne!(frozen.as_ptr().unwrap(), before);
    });
}

#[test]
fn revoke() {
    Fixture::run(|rt| {
        let owner = ctx(rt, "acme", "alice", Language::Rust);
        let buf = owner.alloc(64).unwrap();
        let id = buf.share(&[Grant::read()]).unwrap();
        let bob = ctx(rt, "acme", "bob", Language::Rust);
        let kept = bob.acquire(id).unwrap();
        assert!(bob.revoke(id).is_err()); // only the context that made the share
        owner.revoke(id).unwrap();
        assert_eq!(bob.acquire(id).unwrap_err().kind(), ErrorKind::AccessDenied);
        kept.to_vec().unwrap(); // holders keep their handles
    });
}

#[test]
fn transfer_within_a_tenant_moves_nothing() {
    Fixture::run(|rt| {
        let alice = ctx(rt, "acme", "alice", Language::Rust);
        let bob = ctx(rt, "acme", "bob", Language::Python);
        let buf = alice.alloc(256).unwrap();
        buf.write(0, b"payload").unwrap();
        let (addr, old) = (buf.as_ptr().unwrap(), buf.handle());
        let moved = buf.transfer(&bob).unwrap();
        assert!(moved.context() == &bob);
        assert_eq!(moved.as_ptr().unwrap(), addr); // no copy
        assert_eq!(&moved.to_vec().unwrap()[..7], b"payload");
        assert_eq!(moved.info().unwrap().user, "alice");
        // The giver's handle died at once.
        assert_eq!(Buffer::<ReadOnly>::from_raw(&alice, old).unwrap_err().kind(), ErrorKind::InvalidHandle);
    });
}

#[test]
fn transfer_to_another_tenant_copies() {
    Fixture::run(|rt| {
        let alice = ctx(rt, "acme", "alice", Language::Rust);
        let other = rt.context("globex").level(Level::Secret).open().unwrap();
        let buf = alice.alloc(256).unwrap();
        buf.write(0, b"payload").unwrap();
        let moved = buf.transfer_async(&other, Stream::DEFAULT).unwrap();
        assert_eq!(&moved.to_vec().unwrap()[..7], b"payload");
        assert_eq!(moved.info().unwrap().tenant, "globex");
        let t = rt.tenant_stats().unwrap().into_iter().find(|t| t.tenant == "globex").unwrap();
        assert_eq!(t.live_blocks, 1);
    });
}

#[test]
fn transfer_refusals_give_the_buffer_back() {
    Fixture::run(|rt| {
        let alice = ctx(rt, "acme", "alice", Language::Rust);
        let bob = ctx(rt, "acme", "bob", Language::Rust);
        let buf = alice.alloc(64).unwrap();
        let id = buf.share(&[Grant::read()]).unwrap();
        let held = bob.acquire(id).unwrap();
        let back = buf.transfer(&bob).unwrap_err();
        assert_eq!(back.error.kind(), ErrorKind::Busy);
        let buf = back.into_value();
        buf.write(0, b"still mine").unwrap();
        held.release().unwrap();
        // Quota of the receiving tenant.
        rt.set_quota("poor", Some(1), None).unwrap();
        let poor = rt.context("poor").open().unwrap();
        let plain = alice.alloc(64).unwrap();
        let back = plain.transfer(&poor).unwrap_err();
        assert_eq!(back.error.kind(), ErrorKind::Quota);
        back.value.write(0, b"kept").unwrap();
        // SAFETY: poor is open for the call.
        let back = unsafe { back.value.transfer_to_raw(std::ptr::NonNull::new(poor.as_ptr()).unwrap()) };
        assert_eq!(back.unwrap_err().error.kind(), ErrorKind::Quota);
        drop(buf);
    });
}

#[test]
fn transfer_to_a_borrowed_context() {
    Fixture::run(|rt| {
        let alice = ctx(rt, "acme", "alice", Language::Rust);
        let theirs = ctx(rt, "acme", "py", Language::Python);
        // As another binding would hand its context over.
        let ptr = std::ptr::NonNull::new(theirs.as_ptr()).unwrap();
        // SAFETY: `theirs` outlives the borrowed context and its buffers.
        let borrowed = unsafe { Context::from_raw_borrowed(rt, ptr) };
        let buf = alice.alloc(32).unwrap();
        buf.write(0, b"hand-over").unwrap();
        let moved = buf.transfer(&borrowed).unwrap();
        assert_eq!(&moved.to_vec().unwrap()[..9], b"hand-over");
        let raw = moved.into_raw();
        drop(borrowed); // does not close `theirs`
        let adopted: Buffer = Buffer::from_raw(&theirs, raw).unwrap();
        // SAFETY: as above.
        let raw =
            unsafe { adopted.transfer_to_raw(std::ptr::NonNull::new(alice.as_ptr()).unwrap()) }.unwrap();
        Buffer::<ReadOnly>::from_raw(&alice, raw).unwrap().free().unwrap();
    });
}

#[test]
fn closing_a_holder_releases_its_handles() {
    let fx = Fixture::new();
    let owner = ctx(&fx.rt, "acme", "alice", Language::Rust);
    let buf = owner.alloc(300).unwrap();
    let id = buf.share(&[Grant::read()]).unwrap();
    {
        let guest = ctx(&fx.rt, "acme", "bob", Language::Python);
        let _ = guest.acquire(id).unwrap().into_raw(); // leaked on purpose
        assert_eq!(buf.info().unwrap().holders, 2);
    }
    assert_eq!(buf.info().unwrap().holders, 1);
    assert_eq!(fx.rt.stats().unwrap().leaked_blocks, 1);
}
