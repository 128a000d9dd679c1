defmodule GmsTest do
  use ExUnit.Case, async: true
  import Bitwise
  import Gms.Test.Helpers

  setup do
    setup_context("t")
  end

  test "write and read back, binaries and iodata", %{ctx: ctx} do
    {:ok, buf} = Gms.alloc(ctx, 64, zero: true)
    assert :ok = Gms.write(buf, 0, "hello")
    assert :ok = Gms.write(buf, 5, [", ", ~c"gm", "s"])
    assert {:ok, "hello, gms"} = Gms.read(buf, 0, 10)
    assert {:ok, <<0, 0>>} = Gms.read(buf, 62, 2)
    assert :ok = Gms.fill(buf, 0, ?x, 3)
    assert Gms.read!(buf, 0, 4) == "xxxl"
    assert {:ok, %{size: 64, language: :elixir, holders: 1, owner: owner}} = Gms.info(buf)
    assert owner == self()
  end

  test "each GMS_E_* code is an atom; out of bounds changes nothing", %{rt: rt, ctx: ctx} do
    buf = Gms.alloc!(ctx, 16, zero: true)
    assert {:error, :out_of_bounds} = Gms.write(buf, 12, "hello")
    assert Gms.last_error() =~ "outside the buffer"
    assert Gms.read!(buf, 0, 16) == <<0::128>>
    assert {:error, :out_of_bounds} = Gms.read(buf, 10, 7)
    assert {:error, :out_of_bounds} = Gms.read(buf, 0xFFFF_FFFF_FFFF_FFFF, 1)
    assert {:error, :invalid_arg} = Gms.context(rt, tenant: "", user: "u")
    assert {:error, :invalid_arg} = Gms.context(rt, tenant: "a", user: "u", level: :bogus)
    assert {:error, :invalid_handle} = Gms.acquire(ctx, 12_345)
    assert {:error, :invalid_arg} = Gms.tenant_stats(rt, "nobody-has-this-tenant")
  end

  test "the ! variants raise Gms.Error with the code and gms's message", %{ctx: ctx} do
    buf = Gms.alloc!(ctx, 8)
    err = assert_raise Gms.Error, fn -> Gms.write!(buf, 4, "12345") end
    assert err.code == :out_of_bounds
    assert err.message =~ "out_of_bounds: gms_write"
    assert_raise Gms.Error, ~r/invalid_handle/, fn -> Gms.acquire!(ctx, 1) end
  end

  test "a freed buffer is dead for every holder of its term", %{rt: rt, ctx: ctx, tenant: tenant} do
    buf = Gms.alloc!(ctx, 100)
    assert live_blocks(rt, tenant) == 1
    assert :ok = Gms.free(buf)
    assert live_blocks(rt, tenant) == 0
    assert {:error, :invalid_handle} = Gms.free(buf)
    assert {:error, :invalid_handle} = Gms.read(buf, 0, 1)
    assert {:error, :invalid_handle} = Gms.write(buf, 0, "x")
    assert {:error, :invalid_handle} = Gms.info(buf)
  end

  test "only the owner frees, transfers or shares; others may read", %{ctx: ctx} do
    buf = Gms.alloc!(ctx, 8)
    Gms.write!(buf, 0, "owned")
    me = self()

    task =
      Task.async(fn ->
        {Gms.free(buf), Gms.transfer(buf, self()), Gms.share(buf, grants: [[]]),
         Gms.read(buf, 0, 5)}
      end)

    assert {{:error, :access_denied}, {:error, :access_denied}, {:error, :access_denied},
            {:ok, "owned"}} = Task.await(task)

    assert {:ok, %{owner: ^me}} = Gms.info(buf)
  end

  test "a killed process's buffers come back at once, though others hold their terms",
       %{rt: rt, ctx: ctx, tenant: tenant} do
    me = self()

    holder =
      spawn(fn ->
        # A small buffer (released in the down callback) and a large one
        # (scrubbed on the releaser thread).
        send(me, {:bufs, [Gms.alloc!(ctx, 1000), Gms.alloc!(ctx, 1 <<< 20)]})
        Process.sleep(:infinity)
      end)

    assert_receive {:bufs, bufs}, 5_000
    assert live_blocks(rt, tenant) == 2
    kill_and_wait(holder)
    # The terms are alive here, so no garbage collection frees them: the
    # monitor did.
    assert live_blocks_settle(rt, tenant, 0) == 0
    for buf <- bufs, do: assert({:error, :invalid_handle} = Gms.read(buf, 0, 1))
  end

  test "a crash loses nothing of anyone else's", %{rt: rt, ctx: ctx, tenant: tenant} do
    {:ok, sup} = Task.Supervisor.start_link()
    me = self()

    workers =
      for name <- [:a, :b] do
        {:ok, pid} =
          Task.Supervisor.start_child(sup, fn ->
            buf = Gms.alloc!(ctx, 32)
            Gms.write!(buf, 0, "#{name}'s data")
            send(me, {name, buf})

            receive do
              :crash -> raise "worker #{name} crashes"
            end
          end)

        pid
      end

    assert_receive {:a, a}, 5_000
    assert_receive {:b, b}, 5_000
    assert live_blocks(rt, tenant) == 2
    [pid_a, _pid_b] = workers
    ref = Process.monitor(pid_a)

    ExUnit.CaptureLog.capture_log(fn ->
      send(pid_a, :crash)
      assert_receive {:DOWN, ^ref, :process, ^pid_a, _}, 5_000
    end)

    assert live_blocks_settle(rt, tenant, 1) == 1
    assert {:error, :invalid_handle} = Gms.read(a, 0, 1)
    assert Gms.read!(b, 0, 8) == "b's data"
  end

  test "transfer hands a buffer to another process, and it dies with that one",
       %{rt: rt, ctx: ctx, tenant: tenant} do
    receiver = spawn(fn -> Process.sleep(:infinity) end)
    buf = Gms.alloc!(ctx, 64)
    Gms.write!(buf, 0, "moved")
    assert :ok = Gms.transfer(buf, receiver)
    assert {:ok, %{owner: ^receiver}} = Gms.info(buf)
    # No longer ours to free; still readable through the term.
    assert {:error, :access_denied} = Gms.free(buf)
    assert Gms.read!(buf, 0, 5) == "moved"
    kill_and_wait(receiver)
    assert live_blocks_settle(rt, tenant, 0) == 0
    assert {:error, :invalid_handle} = Gms.read(buf, 0, 5)
  end

  test "a transfer to a dead process is refused and changes nothing", %{ctx: ctx} do
    dead = spawn(fn -> :ok end)
    kill_and_wait(dead)
    buf = Gms.alloc!(ctx, 8)
    assert {:error, :invalid_arg} = Gms.transfer(buf, dead)
    me = self()
    assert {:ok, %{owner: ^me}} = Gms.info(buf)
    assert :ok = Gms.free(buf)
  end

  test "the buffer outlives the process that transferred it away", %{
    rt: rt,
    ctx: ctx,
    tenant: tenant
  } do
    me = self()

    giver =
      spawn(fn ->
        buf = Gms.alloc!(ctx, 16)
        Gms.write!(buf, 0, "gift")
        :ok = Gms.transfer(buf, me)
        send(me, {:gift, buf})
      end)

    assert_receive {:gift, buf}, 5_000
    kill_and_wait(giver)
    assert live_blocks(rt, tenant) == 1
    assert Gms.read!(buf, 0, 4) == "gift"
    assert :ok = Gms.free(buf)
  end

  test "transfer_to moves a buffer into another tenant's context", %{
    rt: rt,
    ctx: ctx,
    tenant: tenant
  } do
    other = unique_tenant("other")
    ctx2 = Gms.context!(rt, tenant: other, user: "bob")
    buf = Gms.alloc!(ctx, 32)
    Gms.write!(buf, 0, "crossing")
    assert {:ok, moved} = Gms.transfer_to(buf, ctx2)
    assert {:error, :invalid_handle} = Gms.read(buf, 0, 1)
    assert Gms.read!(moved, 0, 8) == "crossing"
    assert {:ok, %{tenant: ^other}} = Gms.info(moved)
    assert live_blocks(rt, tenant) == 0
    assert live_blocks(rt, other) == 1
    # Used to the end: a collection (the reaper's, say) would free it.
    assert :ok = Gms.free(moved)
  end

  test "a buffer nobody refers to is freed by its destructor", %{rt: rt, ctx: ctx, tenant: tenant} do
    # Made in a function whose result is dropped below.
    make = fn -> for size <- [100, 1 <<< 20], do: Gms.alloc!(ctx, size) end
    bufs = make.()
    assert live_blocks(rt, tenant) == 2
    # The last use of bufs: from here only garbage refers to the buffers.
    assert length(bufs) == 2
    :erlang.garbage_collect()
    # The BEAM may run a destructor a moment after the collection.
    assert live_blocks_settle(rt, tenant, 0) == 0
  end

  test "large reads and writes (dirty schedulers) move the bytes", %{ctx: ctx} do
    size = 4 <<< 20
    data = :crypto.strong_rand_bytes(size)
    buf = Gms.alloc!(ctx, size)
    assert :ok = Gms.write(buf, 0, data)
    assert Gms.read!(buf, 0, size) == data
    assert :ok = Gms.fill(buf, 0, 7, size)
    assert Gms.read!(buf, size - 3, 3) == <<7, 7, 7>>
    assert :ok = Gms.free(buf)
  end

  describe "sharing" do
    test "share, acquire, read, release", %{ctx: ctx, rt: rt, tenant: tenant} do
      buf = Gms.alloc!(ctx, 16)
      Gms.write!(buf, 0, "shared words")
      id = Gms.share!(buf, grants: [[language: :elixir, mode: :read]], immutable: true)
      reader = Gms.context!(rt, tenant: tenant, user: "reader")
      mine = Gms.acquire!(reader, id, :read)
      assert Gms.read!(mine, 0, 12) == "shared words"
      assert {:ok, %{holders: 2, immutable: true, access: :read, share_id: ^id}} = Gms.info(mine)
      # Immutable: nobody writes, the owner included.
      assert {:error, :read_only} = Gms.write(buf, 0, "x")
      assert {:error, :read_only} = Gms.acquire(reader, id, :read_write)
      assert :ok = Gms.release(mine)
      assert :ok = Gms.free(buf)
      assert live_blocks(rt, tenant) == 0
    end

    test "grants decide who may acquire; revoke stops new acquires", %{
      ctx: ctx,
      rt: rt,
      tenant: tenant
    } do
      buf = Gms.alloc!(ctx, 16)
      id = Gms.share!(buf, grants: [[user: "carol", language: :elixir]])
      assert {:error, :busy} = Gms.share(buf, grants: [[]])
      stranger = Gms.context!(rt, tenant: unique_tenant("stranger"), user: "carol")
      dave = Gms.context!(rt, tenant: tenant, user: "dave")
      carol = Gms.context!(rt, tenant: tenant, user: "carol")
      assert {:error, :access_denied} = Gms.acquire(stranger, id)
      assert {:error, :access_denied} = Gms.acquire(dave, id)
      first = Gms.acquire!(carol, id)
      assert {:error, :access_denied} = Gms.revoke(carol, id)
      assert :ok = Gms.revoke(ctx, id)
      assert {:error, :access_denied} = Gms.acquire(carol, id)
      # Holders keep their handles after a revoke.
      assert {:ok, _} = Gms.read(first, 0, 4)
    end

    test "bad grants are refused", %{ctx: ctx} do
      buf = Gms.alloc!(ctx, 16)
      assert {:error, :invalid_arg} = Gms.share(buf, grants: [])
      assert {:error, :invalid_arg} = Gms.share(buf, grants: [[language: :cobol]])

      assert {:error, :invalid_arg} =
               Gms.share(buf, grants: [[tenant: String.duplicate("x", 64)]])

      assert {:error, :invalid_arg} = Gms.share(buf, grants: List.duplicate([], 17))
      assert {:ok, %{share_id: nil}} = Gms.info(buf)
    end

    test "a shared buffer lives until its last holder goes, even if the owner dies",
         %{ctx: ctx, rt: rt, tenant: tenant} do
      me = self()

      owner =
        spawn(fn ->
          buf = Gms.alloc!(ctx, 16)
          Gms.write!(buf, 0, "still here")
          send(me, {:id, Gms.share!(buf, grants: [[]])})
          Process.sleep(:infinity)
        end)

      assert_receive {:id, id}, 5_000
      mine = Gms.acquire!(ctx, id)
      kill_and_wait(owner)
      assert Gms.read!(mine, 0, 10) == "still here"
      assert live_blocks(rt, tenant) == 1
      Gms.release!(mine)
      assert live_blocks(rt, tenant) == 0
    end
  end
end
