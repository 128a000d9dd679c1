defmodule Gms.Test.XlangPeer do
  @moduledoc false
  # C code beside the binding (test/support/xlang_peer.c), built by the
  # gms_nif compiler in the test environment into the build path.

  def load do
    path = Path.join(Mix.Project.build_path(), "gms_xlang_peer")
    :erlang.load_nif(String.to_charlist(path), 0)
  end

  defp nif, do: :erlang.nif_error(:xlang_peer_not_loaded)

  def open, do: nif()
  def share_text(_text), do: nif()
  def read_share(_share_id, _length), do: nif()
  def write_share(_share_id, _text), do: nif()
  def contexts, do: nif()
  def alloc_in_thread(_tenant, _size), do: nif()
  def close, do: nif()
end
