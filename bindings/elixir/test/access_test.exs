defmodule Gms.AccessTest do
  # Access windows and checked atomics (gms/access.h): a writer's window
  # keeps a second holder out, atomics return the old word at both widths,
  # and refusals come back as their {:error, code}.
  use ExUnit.Case, async: true
  import Bitwise
  import Gms.Test.Helpers

  setup do
    %{rt: rt, tenant: tenant} = ctx = setup_context("access")
    other = Gms.context!(rt, tenant: tenant, user: "second")
    Map.put(ctx, :other, other)
  end

  defp shared(ctx, other, mode) do
    buf = Gms.alloc!(ctx, 4096, zero: true)
    id = Gms.share!(buf, grants: [[mode: :read_write]])
    {buf, Gms.acquire!(other, id, mode), id}
  end

  test "a writer's window keeps a second holder out until it ends", %{ctx: ctx, other: other} do
    {buf, reader, _} = shared(ctx, other, :read)
    assert :ok = Gms.access_begin(buf, :read_write)
    :ok = Gms.write(buf, 0, "round 1")
    assert {:error, :busy} = Gms.access_begin(reader, :read, wait: false)
    assert Gms.last_error() =~ "conflicting window"
    assert {:error, :invalid_arg} = Gms.access_begin(buf, :read, wait: false)
    assert {:error, :busy} = Gms.free(buf)
    assert :ok = Gms.access_end(buf)
    assert {:error, :invalid_arg} = Gms.access_end(buf)

    assert {:ok, "round 1"} =
             Gms.with_access(reader, :read, fn ->
               # readers together; a writer is kept out
               {:ok, :inner} = Gms.with_access(buf, :read, fn -> :inner end, wait: false)
               assert {:error, :busy} = Gms.access_begin(buf, :read_write, wait: false)
               Gms.read!(reader, 0, 7)
             end)

    assert {:error, :read_only} = Gms.access_begin(reader, :read_write)
    assert_raise RuntimeError, fn -> Gms.with_access(buf, :read_write, fn -> raise "boom" end) end
    assert {:ok, :again} = Gms.with_access(buf, :read_write, fn -> :again end, wait: false)
    assert_raise FunctionClauseError, fn -> Gms.access_begin(buf, :atomic) end
  end

  test "a waiting reader in another process sees the whole write", %{ctx: ctx, other: other} do
    {buf, reader, _} = shared(ctx, other, :read)
    :ok = Gms.access_begin(buf, :read_write)
    me = self()

    task =
      Task.async(fn ->
        send(me, :waiting)
        Gms.with_access(reader, :read, fn -> Gms.read!(reader, 0, 512) end)
      end)

    assert_receive :waiting
    for i <- 0..7, do: :ok = Gms.fill(buf, i * 64, 7, 64)
    :ok = Gms.access_end(buf)
    assert {:ok, data} = Task.await(task)
    assert data == :binary.copy(<<7>>, 512)
  end

  test "a window left open by a dead owner does not keep its buffer", %{
    rt: rt,
    ctx: ctx,
    tenant: tenant
  } do
    me = self()

    pid =
      spawn(fn ->
        buf = Gms.alloc!(ctx, 64)
        send(me, {:opened, Gms.access_begin(buf, :read_write), Gms.free(buf)})
        Process.sleep(:infinity)
      end)

    assert_receive {:opened, :ok, {:error, :busy}}
    assert live_blocks(rt, tenant) == 1
    kill_and_wait(pid)
    assert live_blocks_settle(rt, tenant, 0) == 0
  end

  test "atomics return the old word at both widths", %{ctx: ctx} do
    buf = Gms.alloc!(ctx, 64, zero: true)
    assert {:ok, 0} = Gms.atomic_add(buf, 0, 5)
    assert {:ok, 5} = Gms.atomic_add(buf, 0, 2)
    assert {:ok, 7} = Gms.atomic_max(buf, 0, 3)
    assert {:ok, 7} = Gms.atomic_min(buf, 0, 3)
    assert {:ok, 3} = Gms.atomic_cas(buf, 0, 3, 10)
    assert {:ok, 10} = Gms.atomic_cas(buf, 0, 3, 11)
    assert {:ok, 0} = Gms.atomic_exchange(buf, 8, -1, type: :s64)
    assert {:ok, -1} = Gms.atomic_min(buf, 8, 4, type: :s64)
    assert {:ok, -1} = Gms.atomic_max(buf, 8, 4, type: :s64)
    assert {:ok, 4} = Gms.atomic_min(buf, 8, 0xFFFF_FFFF_FFFF_FFFF)
    assert {:ok, 0} = Gms.atomic_add(buf, 16, 0xFFFF_FFFF, type: :u32)
    assert {:ok, 0xFFFF_FFFF} = Gms.atomic_add(buf, 16, 2, type: :u32)
    assert {:ok, 0} = Gms.atomic_or(buf, 20, 0xF0, type: :u32)
    assert {:ok, 0xF0} = Gms.atomic_xor(buf, 20, 0xFF, type: :u32)
    assert {:ok, 0x0F} = Gms.atomic_and(buf, 20, 0x3C, type: :u32)
    assert {:ok, 0} = Gms.atomic_min(buf, 24, -5, type: :s32)
    assert {:ok, -5} = Gms.atomic_max(buf, 24, -9, type: :s32)
    assert {:ok, 0xFFFF_FFFB} = Gms.atomic_max(buf, 24, 3, type: :u32)
    assert {:ok, 0} = Gms.atomic_exchange(buf, 28, 9, type: :u32)
    assert {:ok, 9} = Gms.atomic_cas(buf, 28, 9, 1, type: :u32)
    assert {:ok, 1} = Gms.atomic_cas(buf, 28, 9, 2, type: :u32)

    assert {:ok,
            <<10::little-64, 4::little-signed-64, 1::little-32, 0x0C::little-32,
              -5::little-signed-32, 1::little-32>>} = Gms.read(buf, 0, 32)
  end

  test "misaligned, out of bounds, bad values and read-only holders are refused", %{
    ctx: ctx,
    other: other
  } do
    buf = Gms.alloc!(ctx, 64)
    :ok = Gms.fill(buf, 0, 1, 64)
    assert {:error, :invalid_arg} = Gms.atomic_add(buf, 4, 1)
    assert Gms.last_error() =~ "multiple"
    assert {:error, :invalid_arg} = Gms.atomic_add(buf, 2, 1, type: :u32)
    assert {:error, :out_of_bounds} = Gms.atomic_add(buf, 64, 1, type: :u32)
    assert {:error, :invalid_arg} = Gms.atomic_add(buf, 0, -1)
    assert {:error, :invalid_arg} = Gms.atomic_add(buf, 0, 1 <<< 32, type: :u32)
    assert {:error, :invalid_arg} = Gms.atomic(buf, :nand, 0, 1)
    assert {:error, :invalid_arg} = Gms.atomic_add(buf, 0, 1, type: :u16)
    assert Gms.read!(buf, 0, 64) == :binary.copy(<<1>>, 64)

    id = Gms.share!(buf, grants: [[mode: :read_write]])
    reader = Gms.acquire!(other, id, :read)
    assert {:error, :read_only} = Gms.atomic_add(reader, 0, 1)
    counter = Gms.acquire!(other, id, :atomic)
    assert {:ok, %{access: :atomic}} = Gms.info(counter)
    assert {:ok, 0x0101_0101_0101_0101} = Gms.atomic_add(counter, 0, 1)
    assert {:error, :read_only} = Gms.write(counter, 0, "x")
    assert {:error, :read_only} = Gms.access_begin(counter, :read_write)
    assert {:ok, :counted} = Gms.with_access(counter, :read, fn -> :counted end)

    frozen = Gms.alloc!(ctx, 64)
    fid = Gms.share!(frozen, grants: [[mode: :read_write]], immutable: true)
    assert {:error, :read_only} = Gms.acquire(other, fid, :atomic)
    assert {:error, :read_only} = Gms.atomic_add(frozen, 0, 1)
  end
end
