defmodule Gms.XlangTest do
  # C code in this OS process (test/support/xlang_peer.c, its own shared
  # object linked to the same libgms) opens the process-wide runtime by
  # itself; it and Elixir exchange buffers through share ids only.
  use ExUnit.Case, async: false
  alias Gms.Test.XlangPeer, as: Peer

  setup do
    :ok = Peer.open()
    on_exit(fn -> :ok = Peer.close() end)
    rt = Gms.open!()
    %{rt: rt, ctx: Gms.context!(rt, tenant: "acme", user: "elixir-side")}
  end

  test "C and Elixir see one runtime", %{rt: rt} do
    {:ok, before} = Peer.contexts()
    _ctx = Gms.context!(rt, tenant: "acme", user: "another")
    assert {:ok, after_open} = Peer.contexts()
    assert after_open == before + 1
  end

  test "a buffer C shared is acquired and read in Elixir", %{ctx: ctx} do
    {:ok, id} = Peer.share_text("written by C")
    buf = Gms.acquire!(ctx, id, :read)
    assert Gms.read!(buf, 0, 12) == "written by C"
    assert {:ok, %{language: :c, user: "c-peer", immutable: true, holders: 2}} = Gms.info(buf)
    # The grant is for reading: no writer, in Elixir either.
    assert {:error, :read_only} = Gms.write(buf, 0, "x")
    assert :ok = Gms.release(buf)
  end

  test "a buffer Elixir shared is acquired, read and written in C", %{ctx: ctx} do
    buf = Gms.alloc!(ctx, 32, zero: true)
    Gms.write!(buf, 0, "written by Elixir")
    id = Gms.share!(buf, grants: [[language: :c, user: "c-peer", mode: :read_write]])
    assert {:ok, "written by Elixir"} = Peer.read_share(id, 17)
    # One writer at a time: while Elixir's handle may write, C may not.
    assert {:error, -11, _} = Peer.write_share(id, "x")
    # An Elixir context may not acquire: the grant is C's.
    assert {:error, :access_denied} = Gms.acquire(ctx, id)
    Gms.free!(buf)
  end

  test "C acquires for writing once Elixir's writer is gone", %{ctx: ctx, rt: rt} do
    buf = Gms.alloc!(ctx, 16, zero: true)

    id =
      Gms.share!(buf,
        grants: [[language: :c, mode: :read_write], [language: :elixir, mode: :read]]
      )

    reader = Gms.context!(rt, tenant: "acme", user: "reader")
    mine = Gms.acquire!(reader, id, :read)
    Gms.free!(buf)
    assert :ok = Peer.write_share(id, "from C")
    assert Gms.read!(mine, 0, 6) == "from C"
    Gms.release!(mine)
  end
end
