//! The binding's tests, on private host-backend runtimes: each public
//! function, each error, and every failure path through gms's fail_nth_call
//! (gms.testing.checkAllFailures), with nothing leaked either side.
const std = @import("std");
const gms = @import("gms");
const c = gms.c;

const expect = std.testing.expect;
const expectEqual = std.testing.expectEqual;
const expectEqualStrings = std.testing.expectEqualStrings;
const expectError = std.testing.expectError;

const host: gms.Options = .{ .backend = .host };

/// A private runtime and one context (tenant acme, user alice). A test
/// runs its body in a block (whose defers release its buffers), then
/// `try f.expectNoLeaks()`; `defer f.deinit()` closes the rest.
const Fixture = struct {
    rt: gms.Runtime,
    ctx: gms.Context,
    ctx_open: bool = true,

    fn init() !Fixture {
        var rt = try gms.Runtime.open(host);
        errdefer rt.deinit();
        return .{ .rt = rt, .ctx = try rt.openContext(.{ .tenant = "acme", .user = "alice" }) };
    }

    /// Closes the context: a buffer the test did not release is reclaimed
    /// now, as a leak.
    fn expectNoLeaks(f: *Fixture) !void {
        f.closeContext();
        const s = try f.rt.stats();
        try expectEqual(@as(u64, 0), s.leaked_blocks);
        try expectEqual(@as(u64, 0), s.live_blocks);
    }

    fn closeContext(f: *Fixture) void {
        if (f.ctx_open) f.ctx.deinit();
        f.ctx_open = false;
    }

    fn deinit(f: *Fixture) void {
        f.closeContext();
        f.rt.deinit();
    }
};

fn expectMessage(contains: []const u8) !void {
    const msg = gms.lastMessage();
    if (std.mem.indexOf(u8, msg, contains) == null) {
        std.debug.print("message \"{s}\" lacks \"{s}\"\n", .{ msg, contains });
        return error.TestUnexpectedMessage;
    }
}

// ---- errors and names ----------------------------------------------------------

test "every GMS_E_* code maps to its own error and back" {
    const codes = [_]c_int{
        c.GMS_E_INVALID_ARG, c.GMS_E_INVALID_HANDLE, c.GMS_E_ACCESS_DENIED, c.GMS_E_OUT_OF_BOUNDS,
        c.GMS_E_QUOTA,       c.GMS_E_NO_MEMORY,      c.GMS_E_READ_ONLY,     c.GMS_E_CORRUPTION,
        c.GMS_E_BACKEND,     c.GMS_E_UNSUPPORTED,    c.GMS_E_BUSY,
    };
    var errors: [codes.len]gms.Error = undefined;
    for (codes, &errors) |code, *e| {
        e.* = gms.errorFromCode(code);
        try expect(e.* != error.Unexpected);
        try expectEqual(code, gms.codeOf(e.*));
        // gms_strerror names the code: "GMS_E_QUOTA: quota exceeded".
        try expect(std.mem.startsWith(u8, gms.describe(e.*), "GMS_E_"));
    }
    for (errors, 0..) |a, i| for (errors[i + 1 ..]) |b| try expect(a != b);
    // Every error of the set but Unexpected has a code.
    try expectEqual(@typeInfo(gms.Error).error_set.error_names.?.len, codes.len + 1);
    try expectEqual(error.QuotaExceeded, gms.errorFromCode(c.GMS_E_QUOTA));
    try expectEqual(error.OutOfMemory, gms.errorFromCode(c.GMS_E_NO_MEMORY));
    try expectEqual(error.Unexpected, gms.errorFromCode(-99));
}

test "version and names come from the library" {
    const v = gms.version();
    try expectEqual(@as(usize, c.GMS_VERSION_MAJOR), v.major);
    try expectEqual(@as(usize, c.GMS_VERSION_MINOR), v.minor);
    try expectEqualStrings("secret", gms.Level.secret.name());
    try expectEqualStrings("internal", gms.Level.internal.name());
    try expectEqualStrings("zig", gms.Language.zig.name());
    try expectEqualStrings("python", gms.Language.python.name());
}

// ---- runtime and contexts ------------------------------------------------------------

test "private and shared runtimes" {
    var rt = try gms.Runtime.open(host);
    defer rt.deinit();
    try expectEqualStrings("host", rt.backendName());

    // The shared runtime is one object, reference counted.
    var a = try gms.Runtime.openShared();
    defer a.deinit();
    var b = try gms.Runtime.openShared();
    defer b.deinit();
    try expectEqual(a.ptr, b.ptr);
    try expect(a.ptr != rt.ptr);
}

test "bad runtime options are refused" {
    // Not a power of two: gms says so.
    try expectError(error.InvalidArgument, gms.Runtime.open(.{ .backend = .host, .granule_bytes = 5000 }));
    try expect(gms.lastMessage().len > 0);
    // A path with a NUL byte never reaches C.
    try expectError(error.InvalidArgument, gms.Runtime.open(.{ .backend = .host, .audit_dir = "/tmp\x00/x" }));
    try expectMessage("NUL");
    try expectError(error.InvalidArgument, gms.testing.openRuntime(.{ .audit_key_file = "k\x00" }, 0));
    // A GPU backend on a machine without one.
    if (gms.Runtime.open(.{ .backend = .cuda })) |opened| {
        var rt = opened;
        rt.deinit(); // a GPU is here after all
    } else |err| {
        try expect(err == error.Unsupported or err == error.BackendFailure);
    }
}

test "contexts: names, defaults and refusals" {
    var rt = try gms.Runtime.open(host);
    defer rt.deinit();
    var ctx = try rt.openContext(.{ .tenant = "acme" });
    defer ctx.deinit();
    var buf = try ctx.alloc(10, .{});
    defer buf.deinit();
    const info = try buf.info();
    try expectEqualStrings("acme", info.tenant());
    try expectEqualStrings("acme", info.user()); // the user defaults to the tenant
    try expectEqual(gms.Level.internal, info.level);
    try expectEqual(gms.Language.zig, info.language);
    try expectEqual(@as(u64, 1), (try rt.stats()).contexts);

    try expectError(error.InvalidArgument, rt.openContext(.{ .tenant = "" }));
    try expect(gms.lastMessage().len > 0);
    try expectError(error.InvalidArgument, rt.openContext(.{ .tenant = "bad name\n" }));
    try expectError(error.InvalidArgument, rt.openContext(.{ .tenant = "acme\x00evil" }));
    try expectMessage("NUL");
    try expectError(error.InvalidArgument, rt.openContext(.{ .tenant = "acme", .user = "a\x00" }));
    try expectEqual(@as(u64, 1), (try rt.stats()).contexts);
}

// ---- buffers -------------------------------------------------------------------------

test "write, read, fill, copy, info and the raw slice" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var buf = try f.ctx.alloc(64, .{ .zero = true });
        defer buf.deinit();
        try buf.write(0, "hello, gms");
        var back: [10]u8 = undefined;
        try buf.read(0, &back);
        try expectEqualStrings("hello, gms", &back);

        try buf.fill(20, 'x', 4);
        try buf.copyFrom(30, buf.handle, 0, 5); // within one buffer
        var more: [16]u8 = undefined;
        try buf.read(19, &more);
        try expectEqualStrings("\x00xxxx\x00\x00\x00\x00\x00\x00hello", &more);

        const info = try buf.info();
        try expectEqual(@as(u64, 64), info.size);
        try expect(info.block_size >= 64);
        try expect(info.flags.zero and !info.flags.pages);
        try expectEqual(gms.Access.read_write, info.access);
        try expectEqual(@as(u32, 1), info.holders);
        try expectEqual(@as(?gms.ShareId, null), info.share_id);
        try expect(!info.immutable);
        try expectEqualStrings("alice", info.user());

        const raw = try buf.slice();
        try expectEqual(@as(usize, 64), raw.len);
        try expectEqualStrings("hello, gms", raw[0..10]);
        try expectEqual(info.device_ptr, @intFromPtr(raw.ptr));

        var other = try f.ctx.allocCopy("copied");
        defer other.deinit();
        try buf.copyFrom(50, other.handle, 0, 6);
        try buf.read(50, more[0..6]);
        try expectEqualStrings("copied", more[0..6]);
        try expectEqual(@as(u64, 6), (try other.info()).size);
    }
    try f.expectNoLeaks();
}

test "accesses outside the buffer are refused and change nothing" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var buf = try f.ctx.allocCopy("0123456789");
        defer buf.deinit();
        try expectError(error.OutOfBounds, buf.write(8, "abc"));
        var three: [3]u8 = undefined;
        try expectError(error.OutOfBounds, buf.read(8, &three));
        try expectError(error.OutOfBounds, buf.fill(0, 0, 11));
        try expectError(error.OutOfBounds, buf.copyFrom(9, buf.handle, 0, 2));
        try expectError(error.OutOfBounds, buf.write(std.math.maxInt(u64), "a")); // offset + length overflows
        try expect(gms.lastMessage().len > 0);
        var all: [10]u8 = undefined;
        try buf.read(0, &all);
        try expectEqualStrings("0123456789", &all);
        try buf.write(10, ""); // a length of 0 at the end is valid
    }
    try f.expectNoLeaks();
}

test "a released handle is dead; deinit after release does nothing" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var buf = try f.ctx.alloc(32, .{});
        const copy = buf; // the same handle, as a second owner would hold it
        try buf.release();
        try expectEqual(gms.Handle.none, buf.handle);
        buf.deinit(); // no-op
        try buf.release(); // no-op
        var stale = copy;
        try expectError(error.InvalidHandle, stale.info());
        try expectError(error.InvalidHandle, stale.write(0, "x"));
        try expectError(error.InvalidHandle, stale.release()); // a double release
        try expectEqual(copy.handle, stale.handle); // kept: it was refused
        stale.deinit(); // refused too: logged, and the handle is dropped
        try expectEqual(gms.Handle.none, stale.handle);
        // A forged handle is refused like a stale one.
        var forged: gms.Buffer = .{ .ctx = f.ctx, .handle = @fromBackingInt(@backingInt(copy.handle) ^ 0x10) };
        try expectError(error.InvalidHandle, forged.release());
        const s = try f.rt.stats();
        try expectEqual(@as(u64, 0), s.live_blocks);
        try expectEqual(@as(u64, 1), s.frees);
    }
    try f.expectNoLeaks();
}

test "another context's buffer is not ours" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var bob = try f.rt.openContext(.{ .tenant = "acme", .user = "bob" });
        defer bob.deinit();
        var buf = try f.ctx.alloc(16, .{});
        defer buf.deinit();
        var theirs: gms.Buffer = .{ .ctx = bob, .handle = buf.handle };
        try expectError(error.AccessDenied, theirs.write(0, "x"));
        try expectError(error.AccessDenied, theirs.release());
    }
    try f.expectNoLeaks();
}

test "stream-ordered alloc and release" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        // On the host backend there are no streams: any stream value is the
        // plain call.
        var buf = try f.ctx.allocAsync(128, .{ .zero = true }, null);
        try buf.write(0, "async");
        try buf.releaseAsync(null);
        try expectEqual(gms.Handle.none, buf.handle);
        var stale: gms.Buffer = .{ .ctx = f.ctx, .handle = @fromBackingInt(1) };
        try expectError(error.InvalidHandle, stale.releaseAsync(null));
        try expectError(error.InvalidArgument, f.ctx.allocAsync(0, .{}, null));
        try f.rt.sync();
        try expectEqual(@as(u64, 0), (try f.rt.stats()).live_blocks);
    }
    try f.expectNoLeaks();
}

test "quota, tenant stats and the pressure callback" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        try f.rt.setQuota("acme", .{ .max_allocs = 2 });
        var a = try f.ctx.alloc(100, .{});
        defer a.deinit();
        var b = try f.ctx.alloc(100, .{});
        try expectError(error.QuotaExceeded, f.ctx.alloc(100, .{}));

        var t = try f.rt.tenantStats(0);
        try expectEqualStrings("acme", t.tenant());
        try expectEqual(@as(u64, 2), t.raw.max_allocs);
        try expectEqual(@as(u64, c.GMS_UNLIMITED), t.raw.max_bytes);
        try expectEqual(@as(u64, 1), t.raw.quota_refusals);
        try expectError(error.InvalidArgument, f.rt.tenantStats(1));
        try expectError(error.InvalidArgument, f.rt.setQuota("a\x00", .{}));

        // The callback releases what "its runtime no longer uses": b.
        const Releaser = struct {
            victim: *gms.Buffer,
            calls: usize = 0,
            reason: ?gms.Error = null,
            tenant: [8]u8 = undefined,
            fn onPressure(self: *@This(), p: gms.Pressure) void {
                self.calls += 1;
                self.reason = p.reason;
                @memcpy(self.tenant[0..4], p.tenant[0..4]);
                self.victim.deinit();
            }
        };
        var releaser: Releaser = .{ .victim = &b };
        try f.rt.onPressure(&releaser, Releaser.onPressure);
        var c3 = try f.ctx.alloc(100, .{});
        defer c3.deinit();
        try expect(releaser.calls >= 1);
        try expectEqual(@as(?gms.Error, error.QuotaExceeded), releaser.reason);
        try expectEqualStrings("acme", releaser.tenant[0..4]);
        const s = try f.rt.stats();
        try expectEqual(@as(u64, 1), s.pressure_recovered);

        try f.rt.setQuota("acme", .{}); // lifted
        var d = try f.ctx.alloc(100, .{});
        defer d.deinit();
        t = try f.rt.tenantStats(0);
        try expectEqual(@as(u64, c.GMS_UNLIMITED), t.raw.max_allocs);
    }
    try f.expectNoLeaks();
}

test "out of memory, trim and stats" {
    var rt = try gms.Runtime.open(.{ .backend = .host, .max_held_bytes = 4 << 20 });
    defer rt.deinit();
    var ctx = try rt.openContext(.{ .tenant = "acme" });
    defer ctx.deinit();
    try expectError(error.OutOfMemory, ctx.alloc(64 << 20, .{}));
    try expect(gms.lastMessage().len > 0);
    var buf = try ctx.alloc(1 << 20, .{});
    var s = try rt.stats();
    try expectEqual(@as(u64, 1), s.live_blocks);
    try expect(s.held_bytes >= 1 << 20);
    try expectEqual(@as(u64, 1), s.allocs);
    buf.deinit();
    try rt.trim();
    s = try rt.stats();
    try expectEqual(@as(u64, 0), s.live_blocks);
    try expectEqual(@as(u64, 1), s.frees);
}

test "verify, the violation callback and error.Corruption" {
    var rt = try gms.Runtime.open(host);
    defer rt.deinit();
    var report: gms.Report = undefined;
    try rt.verify(&report);
    try expectEqual(@as(u64, 0), report.violations);
    try rt.verify(null);

    const Seen = struct {
        count: std.atomic.Value(u32) = .init(0),
        kind: gms.ViolationKind = undefined,
        offset: i64 = 0,
        fn onViolation(self: *@This(), v: gms.Violation) void {
            self.kind = v.kind;
            self.offset = v.offset;
            std.debug.assert(v.message.len > 0 and v.size == 100);
            _ = self.count.fetchAdd(1, .seq_cst);
        }
    };
    var seen: Seen = .{};
    try rt.onViolation(&seen, Seen.onViolation);

    var ctx = try rt.openContext(.{ .tenant = "acme" });
    defer ctx.deinit();
    var buf = try ctx.alloc(100, .{});
    defer buf.deinit();
    // One byte past the end, through the unchecked raw pointer: the redzone.
    const raw = try buf.slice();
    raw.ptr[100] ^= 0xff;
    try expectError(error.Corruption, rt.verify(&report));
    try expect(report.violations >= 1);
    try expect(std.mem.sliceTo(&report.first_violation, 0).len > 0);
    try expect(seen.count.load(.seq_cst) >= 1);
    try expectEqual(gms.ViolationKind.overflow, seen.kind);
    try expectEqual(@as(i64, 100), seen.offset);
    // The verifier restored the redzone after its report; the release finds
    // it written again, and frees the buffer all the same.
    raw.ptr[100] ^= 0xff;
    try expectError(error.Corruption, buf.release());
    try expectEqual(gms.Handle.none, buf.handle);
    try expectEqual(@as(u64, 0), (try rt.stats()).live_blocks);
}

test "audit flush without a trail is unsupported" {
    var rt = try gms.Runtime.open(host);
    defer rt.deinit();
    try expectError(error.Unsupported, rt.auditFlush());
    try expect(gms.lastMessage().len > 0);
}

test "an audit trail: the options reach gms and flush writes it" {
    const io = std.testing.io;
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var path: [128]u8 = undefined;
    const trail = try std.fmt.bufPrintSentinel(&path, ".zig-cache/tmp/{s}/trail", .{&tmp.sub_path}, 0);
    // A key shorter than 16 bytes is refused.
    try expectError(error.InvalidArgument, gms.Runtime.open(.{ .backend = .host, .audit_dir = trail, .audit_key = "short" }));
    var rt = try gms.Runtime.open(.{
        .backend = .host,
        .audit_dir = trail,
        .audit_key = "a key of at least sixteen bytes",
        .audit_lossy = true,
    });
    defer rt.deinit();
    var ctx = try rt.openContext(.{ .tenant = "acme" });
    defer ctx.deinit();
    var buf = try ctx.alloc(16, .{});
    try buf.release();
    try rt.auditFlush();
    var dir = try tmp.dir.openDir(io, "trail", .{ .iterate = true });
    defer dir.close(io);
    var it = dir.iterate();
    var files: usize = 0;
    while (try it.next(io)) |_| files += 1;
    try expect(files >= 1); // a sealed segment
}

// ---- sharing -------------------------------------------------------------------------

test "share, acquire, one writer, revoke, last release frees" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var owner = try f.ctx.allocCopy("weights");
        const id = try owner.share(&.{
            .{ .language = .python, .mode = .read },
            .{ .user = "bob", .mode = .read_write },
            .{ .tenant = "research", .user = "carol" },
        });
        try expectEqual(@as(?gms.ShareId, id), (try owner.info()).share_id);
        try expectError(error.Busy, owner.share(&.{.{}})); // one share per buffer

        var py = try f.rt.openContext(.{ .tenant = "acme", .user = "pat", .language = .python });
        defer py.deinit();
        var bob = try f.rt.openContext(.{ .tenant = "acme", .user = "bob" });
        defer bob.deinit();
        var eve = try f.rt.openContext(.{ .tenant = "acme", .user = "eve" });
        defer eve.deinit();
        var carol = try f.rt.openContext(.{ .tenant = "research", .user = "carol" });
        defer carol.deinit();

        var reader = try py.acquire(id);
        defer reader.deinit();
        var seven: [7]u8 = undefined;
        try reader.read(0, &seven);
        try expectEqualStrings("weights", &seven);
        const rinfo = try reader.info();
        try expectEqual(gms.Access.read, rinfo.access);
        try expectEqual(@as(u32, 2), rinfo.holders);
        try expect(reader.handle != owner.handle);
        // A reader's handle cannot write, even through the C call.
        try expectEqual(c.GMS_E_READ_ONLY, c.gms_write(py.ptr, @backingInt(reader.handle), 0, "x", 1));
        try expectError(error.AccessDenied, py.acquireWrite(id)); // beyond its grant
        try expectError(error.AccessDenied, eve.acquire(id)); // no grant
        try expectError(error.InvalidHandle, eve.acquire(@fromBackingInt(@backingInt(id) ^ 0x40))); // forged

        // Another tenant's reader may read, with no raw pointer (no page of its own).
        var far = try carol.acquire(id);
        defer far.deinit();
        try far.read(0, &seven);
        try expectError(error.AccessDenied, far.slice());

        try expectError(error.Busy, bob.acquireWrite(id)); // the owner still writes
        try owner.release();
        var writer = try bob.acquireWrite(id);
        try writer.write(0, "W");
        try reader.read(0, &seven);
        try expectEqualStrings("Weights", &seven);
        try writer.release();

        try expectError(error.AccessDenied, eve.revoke(id)); // only the owner's context
        try f.ctx.revoke(id);
        try expectError(error.AccessDenied, bob.acquire(id));
        try reader.read(0, &seven); // holders keep their handles

        try reader.release();
        try expectEqual(@as(u64, 1), (try f.rt.stats()).live_blocks);
        try far.release(); // the last holder: freed, whoever it is
        const s = try f.rt.stats();
        try expectEqual(@as(u64, 0), s.live_blocks);
        try expectEqual(@as(u64, 0), s.shares);
    }
    try f.expectNoLeaks();
}

test "share grants are checked here and by gms" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var buf = try f.ctx.alloc(8, .{});
        defer buf.deinit();
        const many: [gms.share_grants_max + 1]gms.Grant = @splat(.{});
        try expectError(error.InvalidArgument, buf.share(&many));
        try expectMessage("16");
        try expectError(error.InvalidArgument, buf.share(&.{.{ .tenant = "ac\x00me" }}));
        try expectMessage("NUL");
        try expectError(error.InvalidArgument, buf.freeze(&.{.{ .user = "x\x00" }}));
        try expectError(error.InvalidArgument, buf.share(&.{})); // gms wants 1..16
        try expect(buf.handle != .none); // a refused freeze spends nothing
        try expectEqual(@as(u64, 0), (try f.rt.stats()).shares);
        _ = try buf.share(&many[0..gms.share_grants_max].*);
    }
    try f.expectNoLeaks();
}

test "an immutable share is a read-only view for everybody" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var buf = try f.ctx.alloc(4096, .{ .pages = true });
        try buf.write(0, "frozen");
        const frozen = try buf.freeze(&.{.{ .tenant = "*", .mode = .read_write }});
        try expectEqual(gms.Handle.none, buf.handle); // spent
        var view = frozen.view;
        defer view.deinit();
        const info = try view.info();
        try expect(info.immutable and info.read_only_view);
        try expectEqual(gms.Access.read, info.access);
        // The owner's own handle cannot write any more.
        try expectEqual(c.GMS_E_READ_ONLY, c.gms_write(f.ctx.ptr, @backingInt(view.handle), 0, "x", 1));
        const mem = try view.slice(); // a read-only mapping: []const u8
        try expectEqualStrings("frozen", mem[0..6]);

        var other = try f.rt.openContext(.{ .tenant = "lab", .language = .rust });
        defer other.deinit();
        try expectError(error.ReadOnly, other.acquireWrite(frozen.id));
        var theirs = try other.acquire(frozen.id);
        defer theirs.deinit();
        var six: [6]u8 = undefined;
        try theirs.read(0, &six);
        try expectEqualStrings("frozen", &six);
        var again = try other.acquire(frozen.id);
        try again.releaseAsync(null);
        try expectEqual(gms.Handle.none, again.handle);
        try expect((try theirs.slice()).len == 4096); // a page of its own: readable
        try f.rt.verify(null); // the share is intact
    }
    try f.expectNoLeaks();
}

// ---- transfers -----------------------------------------------------------------------

test "transfer kills the giver's handle" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var same = try f.rt.openContext(.{ .tenant = "acme", .user = "bob" });
        defer same.deinit();
        var lab = try f.rt.openContext(.{ .tenant = "lab", .user = "carol" });
        defer lab.deinit();

        var buf = try f.ctx.allocCopy("moving");
        const old = buf;
        const addr = (try buf.info()).device_ptr;
        var mine = try buf.transfer(same);
        defer mine.deinit();
        try expectEqual(gms.Handle.none, buf.handle);
        var dead = old;
        try expectError(error.InvalidHandle, dead.info());
        try expectEqual(addr, (try mine.info()).device_ptr); // same tenant: not moved

        // To another tenant: copied into its pool, same bytes.
        const kept = mine;
        var theirs = try mine.transferAsync(lab, null);
        defer theirs.deinit();
        try expectEqual(gms.Handle.none, mine.handle);
        dead = kept;
        try expectError(error.InvalidHandle, dead.read(0, &.{}));
        const tinfo = try theirs.info();
        try expectEqualStrings("lab", tinfo.tenant());
        try expect(tinfo.device_ptr != addr);
        var six: [6]u8 = undefined;
        try theirs.read(0, &six);
        try expectEqualStrings("moving", &six);

        // A shared buffer cannot move; a refused transfer spends nothing.
        _ = try theirs.share(&.{.{}});
        try expectError(error.Busy, theirs.transfer(f.ctx));
        try expect(theirs.handle != .none);
        try theirs.read(0, &six);
    }
    try f.expectNoLeaks();
}

// ---- every failure path: gms's fail_nth_call ------------------------------------------

fn allocWriteRead(rt: gms.Runtime) !void {
    var ctx = try rt.openContext(.{ .tenant = "acme", .user = "alice" });
    defer ctx.deinit();
    var buf = try ctx.allocCopy("checked");
    defer buf.deinit();
    var back: [7]u8 = undefined;
    try buf.read(0, &back);
    try expectEqualStrings("checked", &back);
}

fn shareAcquireRelease(rt: gms.Runtime, immutable: bool) !void {
    var owner = try rt.openContext(.{ .tenant = "acme", .language = .zig });
    defer owner.deinit();
    var reader = try rt.openContext(.{ .tenant = "lab", .language = .python });
    defer reader.deinit();
    var buf = try owner.alloc(4096, .{ .pages = immutable });
    defer buf.deinit();
    try buf.write(0, "shared");
    var view: gms.View = undefined;
    const id = if (immutable) blk: {
        const frozen = try buf.freeze(&.{.{ .tenant = "lab" }});
        view = frozen.view;
        break :blk frozen.id;
    } else blk: {
        view = .{ .ctx = owner, .handle = .none };
        break :blk try buf.share(&.{.{ .tenant = "lab" }});
    };
    defer view.deinit();
    var theirs = try reader.acquire(id);
    defer theirs.deinit();
    var back: [6]u8 = undefined;
    try theirs.read(0, &back);
    try owner.revoke(id);
    try theirs.release();
}

fn transferAcross(rt: gms.Runtime) !void {
    var from = try rt.openContext(.{ .tenant = "acme" });
    defer from.deinit();
    var to = try rt.openContext(.{ .tenant = "lab", .level = .secret });
    defer to.deinit();
    var buf = try from.allocCopy("payload");
    defer buf.deinit();
    var moved = try buf.transfer(to);
    defer moved.deinit();
    try rt.verify(null);
}

// ---- access windows and atomics (gms/access.h) ----------------------------------

/// A buffer of f.ctx shared read-write, and a Python context to acquire it.
fn sharedBuffer(f: *Fixture) !struct { buf: gms.Buffer, id: gms.ShareId, py: gms.Context } {
    var buf = try f.ctx.alloc(4096, .{ .zero = true });
    errdefer buf.deinit();
    const id = try buf.share(&.{.{ .mode = .read_write }});
    return .{ .buf = buf, .id = id, .py = try f.rt.openContext(.{ .tenant = "acme", .user = "pat", .language = .python }) };
}

test "a writer's window keeps a second holder out until it ends" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var s = try sharedBuffer(&f);
        defer s.py.deinit();
        defer s.buf.deinit();
        var reader = try s.py.acquire(s.id);
        defer reader.deinit();

        const w = try s.buf.beginAccess(.read_write, .{});
        try s.buf.write(0, "round 1");
        try expectError(error.Busy, reader.beginAccess(.read, .{ .wait = false }));
        try expectMessage("conflicting window");
        try expectError(error.InvalidArgument, s.buf.beginAccess(.read, .{ .wait = false })); // one per handle
        try expectError(error.Busy, s.buf.release()); // no release under a window
        try w.finish();
        try expectError(error.InvalidArgument, w.finish());

        {
            const r1 = try reader.beginAccess(.read, .{ .wait = false });
            defer r1.end();
            const r2 = try s.buf.beginAccess(.read, .{ .wait = false }); // readers together
            defer r2.end();
            var seven: [7]u8 = undefined;
            try reader.read(0, &seven);
            try expectEqualStrings("round 1", &seven);
        }
        {
            const r = try reader.beginAccess(.read, .{});
            defer r.end();
            var other = try f.rt.openContext(.{ .tenant = "acme", .user = "bob" });
            defer other.deinit();
            try expectError(error.Busy, s.buf.beginAccess(.read_write, .{ .wait = false }));
        }
        const again = try s.buf.beginAccess(.read_write, .{ .wait = false }); // the reader's defer ended it
        again.end();
        try expectError(error.ReadOnly, reader.beginAccess(.read_write, .{}));
        try expectError(error.InvalidArgument, s.buf.beginAccess(.atomic, .{}));
    }
    try f.expectNoLeaks();
}

test "a waiting reader in another thread sees the whole write" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var s = try sharedBuffer(&f);
        defer s.py.deinit();
        defer s.buf.deinit();
        var reader = try s.py.acquire(s.id);
        defer reader.deinit();
        const w = try s.buf.beginAccess(.read_write, .{});
        const Reader = struct {
            fn run(v: gms.View, torn: *bool) void {
                const r = v.beginAccess(.read, .{}) catch return; // waits for the writer's end
                defer r.end();
                var got: [512]u8 = undefined;
                v.read(0, &got) catch return;
                for (got) |b| if (b != 7) {
                    torn.* = true;
                };
            }
        };
        var torn = false;
        const t = try std.Thread.spawn(.{}, Reader.run, .{ reader, &torn });
        var i: u64 = 0;
        while (i < 8) : (i += 1) try s.buf.fill(i * 64, 7, 64);
        w.end();
        t.join();
        try expect(!torn);
    }
    try f.expectNoLeaks();
}

test "atomics return the old word at both widths" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var buf = try f.ctx.alloc(64, .{ .zero = true });
        defer buf.deinit();
        try expectEqual(@as(u64, 0), try buf.fetchAdd(u64, 0, 5));
        try expectEqual(@as(u64, 5), try buf.fetchAdd(u64, 0, 2));
        try expectEqual(@as(u64, 7), try buf.fetchMax(u64, 0, 3));
        try expectEqual(@as(u64, 7), try buf.fetchMin(u64, 0, 3));
        try expectEqual(@as(?u64, null), try buf.cmpxchg(u64, 0, 3, 10));
        try expectEqual(@as(?u64, 10), try buf.cmpxchg(u64, 0, 3, 11));
        try expectEqual(@as(i64, 0), try buf.swap(i64, 8, -1));
        try expectEqual(@as(i64, -1), try buf.fetchMin(i64, 8, 4)); // signed: -1 stays
        try expectEqual(@as(i64, -1), try buf.fetchMax(i64, 8, 4));
        try expectEqual(@as(u64, 4), try buf.fetchMin(u64, 8, std.math.maxInt(u64))); // unsigned: 4 stays
        try expectEqual(@as(u32, 0), try buf.fetchAdd(u32, 16, std.math.maxInt(u32)));
        try expectEqual(@as(u32, std.math.maxInt(u32)), try buf.fetchAdd(u32, 16, 2)); // wraps to 1
        try expectEqual(@as(u32, 0), try buf.fetchOr(u32, 20, 0xF0));
        try expectEqual(@as(u32, 0xF0), try buf.fetchXor(u32, 20, 0xFF));
        try expectEqual(@as(u32, 0x0F), try buf.fetchAnd(u32, 20, 0x3C));
        try expectEqual(@as(i32, 0), try buf.fetchMin(i32, 24, -5));
        try expectEqual(@as(i32, -5), try buf.fetchMax(i32, 24, -9));
        try expectEqual(@as(u32, 0xFFFF_FFFB), try buf.fetchMax(u32, 24, 3));
        try expectEqual(@as(u32, 0), try buf.swap(u32, 28, 9));
        try expectEqual(@as(?u32, null), try buf.cmpxchg(u32, 28, 9, 1));
        try expectEqual(@as(?u32, 1), try buf.cmpxchg(u32, 28, 9, 2));
        var words: [32]u8 = undefined;
        try buf.read(0, &words);
        try expectEqual(@as(u64, 10), std.mem.readInt(u64, words[0..8], .little));
        try expectEqual(@as(i64, 4), std.mem.readInt(i64, words[8..16], .little));
        try expectEqual(@as(u32, 1), std.mem.readInt(u32, words[16..20], .little));
        try expectEqual(@as(u32, 0x0C), std.mem.readInt(u32, words[20..24], .little));
        try expectEqual(@as(i32, -5), std.mem.readInt(i32, words[24..28], .little));
        try expectEqual(@as(u32, 1), std.mem.readInt(u32, words[28..32], .little));

        var results = try f.ctx.alloc(24, .{ .zero = true });
        defer results.deinit();
        try buf.atomicBatch(&.{
            gms.AtomicItem.init(u64, .add, 0, 1, 0),
            gms.AtomicItem.init(i64, .cas, 8, 7, 4),
            gms.AtomicItem.init(u32, .@"or", 20, 1, 0),
        }, .{ .buffer = &results }, null);
        var old: [24]u8 = undefined;
        try results.read(0, &old);
        try expectEqual(@as(u64, 10), std.mem.readInt(u64, old[0..8], .little));
        try expectEqual(@as(u64, 4), std.mem.readInt(u64, old[8..16], .little));
        try expectEqual(@as(u64, 0x0C), std.mem.readInt(u64, old[16..24], .little));
        try expectEqual(@as(i64, 7), try buf.fetchAdd(i64, 8, 0));
    }
    try f.expectNoLeaks();
}

test "atomics: misaligned, out of bounds and read-only holders are refused" {
    var f = try Fixture.init();
    defer f.deinit();
    {
        var s = try sharedBuffer(&f);
        defer s.py.deinit();
        defer s.buf.deinit();
        try s.buf.fill(0, 1, 4096);
        try expectError(error.InvalidArgument, s.buf.fetchAdd(u64, 4, 1));
        try expectMessage("multiple");
        try expectError(error.InvalidArgument, s.buf.fetchAdd(u32, 2, 1));
        try expectError(error.OutOfBounds, s.buf.fetchAdd(u32, 4096, 1));
        try expectError(error.InvalidArgument, s.buf.atomicBatch(&.{
            gms.AtomicItem.init(u64, .add, 0, 1, 0),
            gms.AtomicItem.init(u32, .add, 3, 1, 0),
        }, null, null));
        var first: [16]u8 = undefined;
        try s.buf.read(0, &first);
        const ones: [16]u8 = @splat(1);
        try expectEqualStrings(&ones, &first); // nothing changed

        var reader = try s.py.acquire(s.id);
        defer reader.deinit();
        try expectError(error.ReadOnly, reader.fetchAdd(u64, 0, 1));
        var counter = try s.py.acquireAtomic(s.id);
        defer counter.deinit();
        try expectEqual(gms.Access.atomic, (try counter.info()).access);
        try expectEqual(@as(u64, 0x0101_0101_0101_0101), try counter.fetchAdd(u64, 0, 1));
        try expectError(error.ReadOnly, counter.beginAccess(.read_write, .{}));
        (try counter.beginAccess(.read, .{})).end();

        var frozen = try f.ctx.alloc(64, .{});
        const fz = try frozen.freeze(&.{.{ .mode = .read_write }});
        var view = fz.view;
        defer view.deinit();
        try expectError(error.ReadOnly, s.py.acquireAtomic(fz.id));
        try expectError(error.ReadOnly, view.fetchAdd(u64, 0, 1));
    }
    try f.expectNoLeaks();
}

test "every failure of alloc, write and read is a clean error" {
    const needed = try gms.testing.checkAllFailures(host, allocWriteRead, .{});
    try expect(needed > 1);
}

test "every failure of share, acquire and release is a clean error" {
    _ = try gms.testing.checkAllFailures(host, shareAcquireRelease, .{false});
    _ = try gms.testing.checkAllFailures(host, shareAcquireRelease, .{true});
}

test "every failure of a transfer across tenants is a clean error" {
    _ = try gms.testing.checkAllFailures(host, transferAcross, .{});
}

fn forgetsABuffer(rt: gms.Runtime) !void {
    var ctx = try rt.openContext(.{ .tenant = "acme" });
    defer ctx.deinit();
    _ = try ctx.alloc(64, .{}); // never released: a leak at the close
}

fn failsOwnWay(rt: gms.Runtime) !void {
    var ctx = try rt.openContext(.{ .tenant = "acme" });
    defer ctx.deinit();
    return error.NotAGmsError;
}

test "checkAllFailures catches a leak and a foreign error" {
    try expectError(error.LeftBehind, gms.testing.checkAllFailures(host, forgetsABuffer, .{}));
    try expectError(error.NotAGmsError, gms.testing.checkAllFailures(host, failsOwnWay, .{}));
    // The knob itself: a runtime that fails its first operation never opens.
    try expectError(error.OutOfMemory, gms.testing.openRuntime(host, 1));
}

test "broker option: gmsd's socket, refused values named" {
    // A socket nobody listens on: the error names the option and the path
    // (the option wins over GMS_BROKER, so this holds whatever it says).
    try expectError(error.BackendFailure, gms.Runtime.open(.{ .broker = "/nonexistent/zig-gmsd.sock" }));
    try expect(std.mem.indexOf(u8, gms.lastMessage(), "gms_runtime_options.broker=/nonexistent/zig-gmsd.sock: cannot connect to gmsd") != null);
    try expectError(error.InvalidArgument, gms.Runtime.open(.{ .broker = "" }));
    try expect(std.mem.indexOf(u8, gms.lastMessage(), "gms_runtime_options.broker is \"\"") != null);
    try expectError(error.InvalidArgument, gms.Runtime.open(.{ .broker = "/run/gms/gmsd.sock", .backend = .hip }));
    try expect(std.mem.indexOf(u8, gms.lastMessage(), "never HIP") != null);
    try expectError(error.InvalidArgument, gms.Runtime.open(.{ .broker = "/run/gms\x00/gmsd.sock" }));
    // Left null: no broker (GMS_BROKER is not set in the test run).
    var rt = try gms.Runtime.open(.{ .backend = .host, .broker = null });
    defer rt.deinit();
    try expectEqualStrings("host", rt.backendName());
}
