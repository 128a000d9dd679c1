//! libgms_zig_cross.so: C-ABI functions written with the Zig binding, for
//! tests/cross/test_cross.py, which loads this library next to the gms
//! Python package: both then call the one libgms of the process and its
//! process-wide runtime. Every function returns 0 or a GMS_E_* code;
//! gms_zig_message() says why.
const std = @import("std");
const gms = @import("gms");

/// The Zig side: the shared runtime and one context (tenant acme, user zig).
var side: ?struct { rt: gms.Runtime, ctx: gms.Context } = null;

fn code(err: gms.Error) c_int {
    return gms.codeOf(err);
}

fn context() gms.Error!gms.Context {
    return if (side) |s| s.ctx else error.InvalidArgument;
}

fn open() gms.Error!void {
    if (side != null) return;
    var rt = try gms.Runtime.openShared();
    errdefer rt.deinit();
    const ctx = try rt.openContext(.{ .tenant = "acme", .user = "zig", .language = .zig });
    side = .{ .rt = rt, .ctx = ctx };
}

export fn gms_zig_open() c_int {
    open() catch |err| return code(err);
    return 0;
}

/// Closes the context (reclaiming what it still holds) and drops the Zig
/// side's reference to the shared runtime.
export fn gms_zig_close() void {
    if (side) |*s| {
        s.ctx.deinit();
        s.rt.deinit();
        side = null;
    }
}

/// The gms_runtime * the Zig side uses, to compare with Python's.
export fn gms_zig_runtime() ?*anyopaque {
    return if (side) |s| s.rt.ptr else null;
}

export fn gms_zig_context() ?*anyopaque {
    return if (side) |s| s.ctx.ptr else null;
}

export fn gms_zig_message() [*:0]const u8 {
    return gms.lastMessage().ptr;
}

fn makeShare(text: []const u8, immutable: bool, id: *u64, handle: *u64) gms.Error!void {
    const ctx = try context();
    var buf = try ctx.alloc(4096, .{ .pages = immutable });
    errdefer buf.deinit();
    try buf.write(0, text);
    // Python code of our tenant may read it.
    const grants = [_]gms.Grant{.{ .language = .python, .mode = .read }};
    if (immutable) {
        const frozen = try buf.freeze(&grants);
        id.* = @backingInt(frozen.id);
        handle.* = @backingInt(frozen.view.handle);
    } else {
        id.* = @backingInt(try buf.share(&grants));
        handle.* = @backingInt(buf.handle);
    }
}

/// Writes `text` into a new 4 KiB buffer and shares it with Python readers
/// of tenant acme (immutably when asked); the Zig side keeps `handle`.
export fn gms_zig_share(text: [*]const u8, len: usize, immutable: c_int, id: *u64, handle: *u64) c_int {
    makeShare(text[0..len], immutable != 0, id, handle) catch |err| return code(err);
    return 0;
}

/// Acquires a share made elsewhere, for reading or (write != 0) writing.
export fn gms_zig_acquire(id: u64, write: c_int, handle: *u64) c_int {
    const ctx = context() catch |err| return code(err);
    if (write != 0) {
        const buf = ctx.acquireWrite(@fromBackingInt(id)) catch |err| return code(err);
        handle.* = @backingInt(buf.handle);
    } else {
        const view = ctx.acquire(@fromBackingInt(id)) catch |err| return code(err);
        handle.* = @backingInt(view.handle);
    }
    return 0;
}

export fn gms_zig_read(handle: u64, offset: u64, out: [*]u8, len: usize) c_int {
    const ctx = context() catch |err| return code(err);
    const view: gms.View = .{ .ctx = ctx, .handle = @fromBackingInt(handle) };
    view.read(offset, out[0..len]) catch |err| return code(err);
    return 0;
}

export fn gms_zig_write(handle: u64, offset: u64, bytes: [*]const u8, len: usize) c_int {
    const ctx = context() catch |err| return code(err);
    const buf: gms.Buffer = .{ .ctx = ctx, .handle = @fromBackingInt(handle) };
    buf.write(offset, bytes[0..len]) catch |err| return code(err);
    return 0;
}

export fn gms_zig_release(handle: u64) c_int {
    const ctx = context() catch |err| return code(err);
    var buf: gms.Buffer = .{ .ctx = ctx, .handle = @fromBackingInt(handle) };
    buf.release() catch |err| return code(err);
    return 0;
}

/// Writes `text` into a new buffer and transfers it to `to` (a
/// gms_context * of another language): the new handle is `to`'s.
export fn gms_zig_give(text: [*]const u8, len: usize, to: *anyopaque, old: *u64, new: *u64) c_int {
    const ctx = context() catch |err| return code(err);
    var buf = ctx.allocCopy(text[0..len]) catch |err| return code(err);
    defer buf.deinit(); // nothing left to drop once the transfer took it
    old.* = @backingInt(buf.handle);
    const theirs = buf.transfer(.{ .ptr = @ptrCast(to) }) catch |err| return code(err);
    new.* = @backingInt(theirs.handle);
    return 0;
}
