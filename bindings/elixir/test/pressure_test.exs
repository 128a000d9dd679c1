defmodule Gms.PressureTest do
  # Quotas are per tenant, so these could run beside others; they are kept
  # apart anyway because the reaper collects every process.
  use ExUnit.Case, async: false
  import Bitwise
  import Gms.Test.Helpers

  @size 256 <<< 10

  setup do
    %{rt: rt, tenant: tenant} = context = setup_context("pressure")
    # Room for three buffers of @size (with their redzones), not four.
    :ok = Gms.set_quota(rt, tenant, 4 * @size - 1)
    context
  end

  # A process whose three buffers only garbage in its heap refers to, which
  # nothing makes it collect until the reaper does.
  defp garbage_holder(ctx) do
    me = self()

    holder =
      spawn(fn ->
        bufs = for _ <- 1..3, do: Gms.alloc!(ctx, @size)

        receive do
          :drop -> send(me, {:dropped, length(bufs)})
        end

        Process.sleep(:infinity)
      end)

    send(holder, :drop)
    assert_receive {:dropped, 3}, 5_000
    holder
  end

  test "memory held only by garbage in another process is recovered", %{
    rt: rt,
    ctx: ctx,
    tenant: tenant
  } do
    holder = garbage_holder(ctx)
    :ok = Gms.subscribe_pressure()
    assert live_blocks(rt, tenant) == 3
    {:ok, before} = Gms.stats(rt)

    assert {:ok, buf} = Gms.alloc(ctx, @size * 2)
    {:ok, stats} = Gms.stats(rt)
    assert stats.pressure_recovered > before.pressure_recovered, inspect({before, stats})

    assert_receive {:gms_pressure, %{tenant: ^tenant, reason: :quota, bytes_wanted: wanted}},
                   1_000

    assert wanted == @size * 2
    assert live_blocks(rt, tenant) == 1
    Gms.free!(buf)
    :ok = Gms.unsubscribe_pressure()
    assert Process.alive?(holder)
    kill_and_wait(holder)
  end

  test "memory held only by the allocating process's own garbage is recovered",
       %{rt: rt, ctx: ctx, tenant: tenant} do
    bufs = for _ <- 1..3, do: Gms.alloc!(ctx, @size)
    assert live_blocks(rt, tenant) == 3
    # The last use of bufs: from here only garbage refers to the buffers.
    assert length(bufs) == 3
    assert {:ok, buf} = Gms.alloc(ctx, @size * 2)
    assert live_blocks(rt, tenant) == 1
    Gms.free!(buf)
  end

  test "an allocation of C code on a thread of its own recovers memory held by Elixir garbage",
       %{rt: rt, ctx: ctx, tenant: tenant} do
    holder = garbage_holder(ctx)
    assert live_blocks(rt, tenant) == 3
    # C code of the same tenant in this OS process, allocating on a thread
    # the BEAM knows nothing of: the pressure callback reaches the reaper,
    # which collects the holder, and C gets its memory.
    :ok = Gms.Test.XlangPeer.open()
    on_exit(fn -> Gms.Test.XlangPeer.close() end)
    assert {:ok, 0} = Gms.Test.XlangPeer.alloc_in_thread(tenant, @size * 2)
    assert live_blocks(rt, tenant) == 0
    assert Process.alive?(holder)
    kill_and_wait(holder)
  end

  test "memory that is really in use is not taken: the quota error stands", %{
    rt: rt,
    ctx: ctx,
    tenant: tenant
  } do
    held = for _ <- 1..3, do: Gms.alloc!(ctx, @size)
    assert {:error, :quota} = Gms.alloc(ctx, @size)
    assert_raise Gms.Error, ~r/quota/, fn -> Gms.alloc!(ctx, @size) end
    assert live_blocks(rt, tenant) == 3
    for buf <- held, do: assert({:ok, _} = Gms.read(buf, 0, 1))
  end
end
