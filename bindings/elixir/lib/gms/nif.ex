defmodule Gms.Nif do
  @moduledoc false
  # The NIF of c_src/gms_nif.c. Use the Gms module: these functions return
  # {:error, code, message} triples and trust their arguments' shapes.
  # The :gms application loads the library when it starts (not @on_load,
  # which would run when the compiler loads the module, before the
  # library is built).

  @spec load() :: :ok | {:error, {atom(), charlist()}}
  def load do
    path = :filename.join(:code.priv_dir(:gms), ~c"gms_nif")
    :erlang.load_nif(path, 0)
  end

  defp nif, do: :erlang.nif_error(:gms_nif_not_loaded)

  def runtime_open, do: nif()
  def runtime_open_broker(_path), do: nif()
  def backend_name(_rt), do: nif()
  def set_quota(_rt, _tenant, _max_bytes, _max_allocs), do: nif()
  def stats(_rt), do: nif()
  def tenant_stats(_rt, _tenant), do: nif()
  def verify(_rt), do: nif()
  def trim(_rt), do: nif()
  def context_open(_rt, _tenant, _user, _level), do: nif()
  def alloc(_ctx, _size, _flags), do: nif()
  def alloc_dirty(_ctx, _size, _flags), do: nif()
  def free(_buf), do: nif()
  def read(_buf, _offset, _length), do: nif()
  def write(_buf, _offset, _data), do: nif()
  def fill(_buf, _offset, _byte, _length), do: nif()
  def info(_buf), do: nif()
  def transfer(_buf, _pid), do: nif()
  def transfer_context(_buf, _ctx, _pid), do: nif()
  def share(_buf, _grants, _immutable), do: nif()
  def acquire(_ctx, _share_id, _mode), do: nif()
  def revoke(_ctx, _share_id), do: nif()
  def set_reaper(_pid), do: nif()
  def pressure_done(_token), do: nif()
  def drain_releases, do: nif()
  def access_begin(_buf, _mode, _nowait), do: nif()
  def access_begin_dirty(_buf, _mode, _nowait), do: nif()
  def access_end(_buf), do: nif()
  def atomic(_buf, _offset, _op, _width, _operand, _compare), do: nif()
end
