//! The test runner of `zig build test`: runs every test once, each with a
//! fresh std.testing.allocator that must end with nothing leaked, says PASS
//! or FAIL per test and closes with the plain "N passed, N failed" line CI
//! reads. Exits 1 when a test failed.
const std = @import("std");
const builtin = @import("builtin");

pub fn main(init: std.process.Init.Minimal) void {
    var passed: usize = 0;
    var failed: usize = 0;
    var skipped: usize = 0;
    for (builtin.test_functions) |t| {
        std.testing.allocator_instance = .init(std.heap.page_allocator, .{});
        std.testing.io_instance = .init(std.testing.allocator, .{
            .argv0 = .init(init.args),
            .environ = init.environ,
        });
        std.testing.environ = init.environ;
        const result = t.func();
        std.testing.io_instance.deinit();
        const leaked = std.testing.allocator_instance.deinit() != 0;
        if (result) |_| {
            if (leaked) {
                failed += 1;
                std.debug.print("FAIL {s} (leaked memory)\n", .{t.name});
            } else {
                passed += 1;
                std.debug.print("PASS {s}\n", .{t.name});
            }
        } else |err| switch (err) {
            error.SkipZigTest => {
                skipped += 1;
                std.debug.print("SKIP {s}\n", .{t.name});
            },
            else => {
                failed += 1;
                std.debug.print("FAIL {s} ({t})\n", .{ t.name, err });
                if (@errorReturnTrace()) |trace| std.debug.dumpErrorReturnTrace(trace);
            },
        }
    }
    if (skipped != 0) {
        std.debug.print("{d} passed, {d} failed, {d} skipped\n", .{ passed, failed, skipped });
    } else {
        std.debug.print("{d} passed, {d} failed\n", .{ passed, failed });
    }
    if (failed != 0) std.process.exit(1);
}
