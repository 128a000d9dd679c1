//! A new user's project: it depends on the gms package by path (see
//! build.zig.zon, written by run.sh) and finds libgms through pkg-config.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const gms = b.dependency("gms", .{ .target = target, .optimize = optimize });
    const exe = b.addExecutable(.{
        .name = "example",
        .root_module = b.createModule(.{
            .root_source_file = b.path("src/main.zig"),
            .target = target,
            .optimize = optimize,
            .imports = &.{.{ .name = "gms", .module = gms.module("gms") }},
        }),
    });
    b.installArtifact(exe);
    const run = b.addRunArtifact(exe);
    b.step("run", "Run the README's example").dependOn(&run.step);
}
