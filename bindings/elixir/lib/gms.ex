defmodule Gms do
  @moduledoc """
  GPU memory that follows BEAM processes, on gms (`include/gms.h`).

      {:ok, rt} = Gms.open()
      {:ok, ctx} = Gms.context(rt, tenant: "acme", user: "alice")
      {:ok, buf} = Gms.alloc(ctx, 4096, zero: true)
      :ok = Gms.write(buf, 0, "hello")
      {:ok, "hello"} = Gms.read(buf, 0, 5)

  Runtimes, contexts and buffers are NIF resources, freed when the BEAM
  collects their last reference. A buffer also belongs to a process, the
  one that allocated or acquired it: when that process dies the buffer is
  released at once, so a crash loses nothing but the crashed process's own
  buffers. `transfer/2` hands it to another process. Only the owner may
  free, transfer or share a buffer; any process holding the term may read
  and write it while it lives.

  Every function returns `:ok`, `{:ok, value}` or `{:error, code}`, where
  `code` is the `GMS_E_*` code as an atom (`t:error_code/0`); the `!`
  variants return the value or raise `Gms.Error` with gms's message.
  """

  alias Gms.Nif

  defmodule Runtime do
    @moduledoc "The process-wide gms runtime, shared with every language in the OS process."
    @enforce_keys [:ref]
    defstruct [:ref]
    @type t :: %__MODULE__{ref: reference()}
  end

  defmodule Context do
    @moduledoc "Who is acting: a tenant, a user and a level (language: Elixir)."
    @enforce_keys [:ref, :tenant, :user, :level]
    defstruct [:ref, :tenant, :user, :level]

    @type t :: %__MODULE__{
            ref: reference(),
            tenant: String.t(),
            user: String.t(),
            level: Gms.level()
          }
  end

  defmodule Buffer do
    @moduledoc "A buffer's handle, owned by one process."
    @enforce_keys [:ref, :size]
    defstruct [:ref, :size]
    @type t :: %__MODULE__{ref: reference(), size: non_neg_integer()}
  end

  @type error_code ::
          :invalid_arg
          | :invalid_handle
          | :access_denied
          | :out_of_bounds
          | :quota
          | :no_memory
          | :read_only
          | :corruption
          | :backend
          | :unsupported
          | :busy
  @type error :: {:error, error_code()}
  @type level :: :public | :internal | :confidential | :secret
  @type language :: :c | :rust | :elixir | :julia | :zig | :nim | :python | :other | :any
  @type access :: :read | :read_write
  @type share_id :: pos_integer()
  @type grant :: [
          tenant: String.t() | :owner | :any,
          user: String.t() | :any,
          language: language(),
          mode: access()
        ]

  @levels %{public: 0, internal: 1, confidential: 2, secret: 3}
  @languages %{c: 0, rust: 1, elixir: 2, julia: 3, zig: 4, nim: 5, python: 6, other: 7, any: -1}
  @modes %{read: 1, read_write: 2}
  @unlimited 0xFFFF_FFFF_FFFF_FFFF

  # ---- runtime --------------------------------------------------------------

  @doc "Opens the process-wide runtime (`gms_runtime_open(&rt, NULL)`)."
  @spec open() :: {:ok, Runtime.t()} | error()
  def open, do: wrap(Nif.runtime_open(), &%Runtime{ref: &1})

  @doc "Like `open/0`, raising `Gms.Error`."
  @spec open!() :: Runtime.t()
  def open!, do: bang(open())

  @doc "\"host\", \"cuda\" or \"hip\"."
  @spec backend(Runtime.t()) :: String.t()
  def backend(%Runtime{ref: ref}), do: Nif.backend_name(ref)

  @doc """
  Limits a tenant's live bytes and allocations (`:unlimited` lifts a limit).
  """
  @spec set_quota(
          Runtime.t(),
          String.t(),
          non_neg_integer() | :unlimited,
          non_neg_integer() | :unlimited
        ) ::
          :ok | error()
  def set_quota(%Runtime{ref: ref}, tenant, max_bytes, max_allocs \\ :unlimited)
      when is_binary(tenant) do
    ok(Nif.set_quota(ref, tenant, limit(max_bytes), limit(max_allocs)))
  end

  @doc "The runtime's statistics (`gms_stats`) as a map."
  @spec stats(Runtime.t()) :: {:ok, map()} | error()
  def stats(%Runtime{ref: ref}), do: wrap(Nif.stats(ref), & &1)

  @doc """
  One tenant's statistics (`gms_tenant_stats`): live bytes and blocks,
  quota, refusals, leaks. `{:error, :invalid_arg}` for a tenant gms has not
  seen.
  """
  @spec tenant_stats(Runtime.t(), String.t()) :: {:ok, map()} | error()
  def tenant_stats(%Runtime{ref: ref}, tenant) when is_binary(tenant),
    do: wrap(Nif.tenant_stats(ref, tenant), & &1)

  @doc "Checks every invariant of the runtime's state (`gms_verify`)."
  @spec verify(Runtime.t()) :: :ok | error()
  def verify(%Runtime{ref: ref}), do: ok(Nif.verify(ref))

  @doc "Returns unused memory to the backend (`gms_trim`)."
  @spec trim(Runtime.t()) :: :ok | error()
  def trim(%Runtime{ref: ref}), do: ok(Nif.trim(ref))

  # ---- contexts -------------------------------------------------------------

  @doc """
  Opens a context: `tenant:` and `user:` (required), `level:` (`:internal`
  unless given). Its buffers live in the pool of (tenant, level, Elixir).
  """
  @spec context(Runtime.t(), keyword()) :: {:ok, Context.t()} | error()
  def context(%Runtime{ref: rt}, opts) do
    tenant = Keyword.fetch!(opts, :tenant)
    user = Keyword.fetch!(opts, :user)
    level = Keyword.get(opts, :level, :internal)

    case Map.fetch(@levels, level) do
      {:ok, n} when is_binary(tenant) and is_binary(user) ->
        wrap(
          Nif.context_open(rt, tenant, user, n),
          &%Context{ref: &1, tenant: tenant, user: user, level: level}
        )

      _ ->
        {:error, :invalid_arg}
    end
  end

  @doc "Like `context/2`, raising `Gms.Error`."
  @spec context!(Runtime.t(), keyword()) :: Context.t()
  def context!(rt, opts), do: bang(context(rt, opts))

  # ---- buffers --------------------------------------------------------------

  @doc """
  Allocates `size` bytes owned by the calling process. Options: `zero:
  true` fills them with zeros; `pages: true` gives whole pages (see
  `GMS_ALLOC_PAGES`).

  When the memory or the quota is short, gms's pressure ladder runs and
  `Gms.Reaper` collects garbage in the other processes; if that was not
  enough, this process collects its own garbage and tries once more.
  """
  @spec alloc(Context.t(), non_neg_integer(), keyword()) :: {:ok, Buffer.t()} | error()
  def alloc(%Context{ref: ctx}, size, opts \\ []) when is_integer(size) and size >= 0 do
    flags = if(opts[:zero], do: 1, else: 0) + if(opts[:pages], do: 2, else: 0)
    # Large or zeroed allocations take time: a dirty scheduler.
    first =
      if size > 65_536, do: Nif.alloc_dirty(ctx, size, flags), else: Nif.alloc(ctx, size, flags)

    result =
      case first do
        {:error, code, _} when code in [:quota, :no_memory] ->
          :erlang.garbage_collect()
          Nif.alloc_dirty(ctx, size, flags)

        other ->
          other
      end

    wrap(result, &%Buffer{ref: &1, size: size})
  end

  @doc "Like `alloc/3`, raising `Gms.Error`."
  @spec alloc!(Context.t(), non_neg_integer(), keyword()) :: Buffer.t()
  def alloc!(ctx, size, opts \\ []), do: bang(alloc(ctx, size, opts))

  @doc """
  Frees the buffer now (its owner only). Buffers need no explicit free:
  they go when their owner dies or their last reference is collected.
  """
  @spec free(Buffer.t()) :: :ok | error()
  def free(%Buffer{ref: ref}), do: ok(Nif.free(ref))

  @doc "Like `free/1`, raising `Gms.Error`."
  @spec free!(Buffer.t()) :: :ok
  def free!(buf), do: bang(free(buf))

  @doc "Drops the caller's handle on a shared buffer (`free/1` under the sharing API's name)."
  @spec release(Buffer.t()) :: :ok | error()
  def release(buf), do: free(buf)

  @doc "Like `release/1`, raising `Gms.Error`."
  @spec release!(Buffer.t()) :: :ok
  def release!(buf), do: bang(release(buf))

  @doc "Reads `length` bytes at `offset` into a binary; the access must lie wholly inside the buffer."
  @spec read(Buffer.t(), non_neg_integer(), non_neg_integer()) :: {:ok, binary()} | error()
  def read(%Buffer{ref: ref}, offset, length)
      when is_integer(offset) and offset >= 0 and is_integer(length) and length >= 0 do
    wrap(Nif.read(ref, offset, length), & &1)
  end

  @doc "Like `read/3`, raising `Gms.Error`."
  @spec read!(Buffer.t(), non_neg_integer(), non_neg_integer()) :: binary()
  def read!(buf, offset, length), do: bang(read(buf, offset, length))

  @doc "Writes `data` (a binary or iodata) at `offset`; out of bounds, nothing is written."
  @spec write(Buffer.t(), non_neg_integer(), iodata()) :: :ok | error()
  def write(%Buffer{ref: ref}, offset, data) when is_integer(offset) and offset >= 0 do
    ok(Nif.write(ref, offset, IO.iodata_to_binary(data)))
  end

  @doc "Like `write/3`, raising `Gms.Error`."
  @spec write!(Buffer.t(), non_neg_integer(), iodata()) :: :ok
  def write!(buf, offset, data), do: bang(write(buf, offset, data))

  @doc "Sets `length` bytes at `offset` to `byte`."
  @spec fill(Buffer.t(), non_neg_integer(), byte(), non_neg_integer()) :: :ok | error()
  def fill(%Buffer{ref: ref}, offset, byte, length)
      when is_integer(offset) and offset >= 0 and byte in 0..255 and is_integer(length) and
             length >= 0 do
    ok(Nif.fill(ref, offset, byte, length))
  end

  @doc """
  What gms knows of the buffer: size, tenant, user, level, language,
  access, holders, share_id, immutable, and the owner process.
  """
  @spec info(Buffer.t()) :: {:ok, map()} | error()
  def info(%Buffer{ref: ref}), do: wrap(Nif.info(ref), & &1)

  # ---- ownership ------------------------------------------------------------

  @doc """
  Makes `pid` the buffer's owner (the caller must own it): from now on the
  buffer dies with `pid`, not with the caller. `{:error, :invalid_arg}`
  when `pid` is not alive; nothing changes then.
  """
  @spec transfer(Buffer.t(), pid()) :: :ok | error()
  def transfer(%Buffer{ref: ref}, pid) when is_pid(pid), do: ok(Nif.transfer(ref, pid))

  @doc "Like `transfer/2`, raising `Gms.Error`."
  @spec transfer!(Buffer.t(), pid()) :: :ok
  def transfer!(buf, pid), do: bang(transfer(buf, pid))

  @doc """
  Moves the buffer into another context (`gms_transfer`), owned by `pid`:
  the old term is dead afterwards. Across tenants the contents are copied
  into the new tenant's pool and the original wiped.
  """
  @spec transfer_to(Buffer.t(), Context.t(), pid()) :: {:ok, Buffer.t()} | error()
  def transfer_to(%Buffer{ref: ref, size: size}, %Context{ref: ctx}, pid \\ self())
      when is_pid(pid) do
    wrap(Nif.transfer_context(ref, ctx, pid), &%Buffer{ref: &1, size: size})
  end

  # ---- sharing --------------------------------------------------------------

  @doc """
  Shares the buffer (its owner only) and returns the share's id, to hand to
  other contexts of any language. Options: `grants:` (required), a list of
  keyword lists with `tenant:` (a name, `:owner` (default) or `:any`),
  `user:` (a name or `:any` (default)), `language:` (`:any` by default)
  and `mode:` (`:read` by default, or `:read_write`); `immutable: true`
  forbids every write, the owner's included.
  """
  @spec share(Buffer.t(), keyword()) :: {:ok, share_id()} | error()
  def share(%Buffer{ref: ref}, opts) do
    grants = Keyword.fetch!(opts, :grants)

    case encode_grants(grants) do
      {:ok, encoded} -> wrap(Nif.share(ref, encoded, if(opts[:immutable], do: 1, else: 0)), & &1)
      :error -> {:error, :invalid_arg}
    end
  end

  @doc "Like `share/2`, raising `Gms.Error`."
  @spec share!(Buffer.t(), keyword()) :: share_id()
  def share!(buf, opts), do: bang(share(buf, opts))

  @doc """
  Acquires a handle of the caller's own on a shared buffer, owned by the
  calling process; `mode` is `:read` or `:read_write`.
  """
  @spec acquire(Context.t(), share_id(), access()) :: {:ok, Buffer.t()} | error()
  def acquire(%Context{ref: ctx}, share_id, mode \\ :read)
      when is_integer(share_id) and share_id >= 0 and is_map_key(@modes, mode) do
    case Nif.acquire(ctx, share_id, Map.fetch!(@modes, mode)) do
      {:ok, ref} ->
        {:ok, %{size: size}} = Nif.info(ref)
        {:ok, %Buffer{ref: ref, size: size}}

      other ->
        wrap(other, & &1)
    end
  end

  @doc "Like `acquire/3`, raising `Gms.Error`."
  @spec acquire!(Context.t(), share_id(), access()) :: Buffer.t()
  def acquire!(ctx, share_id, mode \\ :read), do: bang(acquire(ctx, share_id, mode))

  @doc "Stops new acquires of a share; `ctx` must be the context that made it."
  @spec revoke(Context.t(), share_id()) :: :ok | error()
  def revoke(%Context{ref: ctx}, share_id) when is_integer(share_id) and share_id >= 0 do
    ok(Nif.revoke(ctx, share_id))
  end

  # ---- memory pressure --------------------------------------------------------

  @doc """
  Subscribes the caller to pressure events: when an allocation finds memory
  or a quota short, it receives `{:gms_pressure, %{tenant: t,
  bytes_wanted: n, reason: :quota | :no_memory}}` and may drop what it can.
  """
  @spec subscribe_pressure() :: :ok
  def subscribe_pressure, do: Gms.Reaper.subscribe(self())

  @doc "Undoes `subscribe_pressure/0`."
  @spec unsubscribe_pressure() :: :ok
  def unsubscribe_pressure, do: Gms.Reaper.unsubscribe(self())

  @doc """
  Waits until the releases that destructors and dead owners queued (large
  buffers are scrubbed off the schedulers) are done: for tests and stats.
  """
  @spec drain_releases() :: :ok
  def drain_releases, do: Nif.drain_releases()

  # ---- helpers ----------------------------------------------------------------

  defp encode_grants(grants) when is_list(grants) and grants != [] do
    Enum.reduce_while(grants, {:ok, []}, fn grant, {:ok, acc} ->
      case encode_grant(grant) do
        {:ok, g} -> {:cont, {:ok, [g | acc]}}
        :error -> {:halt, :error}
      end
    end)
    |> case do
      {:ok, list} -> {:ok, Enum.reverse(list)}
      :error -> :error
    end
  end

  defp encode_grants(_), do: :error

  defp encode_grant(grant) when is_list(grant) do
    tenant =
      case Keyword.get(grant, :tenant, :owner) do
        :owner -> nil
        :any -> "*"
        name -> name
      end

    user = with :any <- Keyword.get(grant, :user, :any), do: nil

    with true <- is_nil(tenant) or is_binary(tenant),
         true <- is_nil(user) or is_binary(user),
         {:ok, lang} <- Map.fetch(@languages, Keyword.get(grant, :language, :any)),
         {:ok, mode} <- Map.fetch(@modes, Keyword.get(grant, :mode, :read)) do
      {:ok, {tenant, user, lang, mode}}
    else
      _ -> :error
    end
  end

  defp encode_grant(_), do: :error

  defp limit(:unlimited), do: @unlimited
  defp limit(n) when is_integer(n) and n >= 0, do: n

  defp ok(:ok), do: :ok
  defp ok({:error, code, message}), do: error(code, message)

  defp wrap({:ok, value}, f), do: {:ok, f.(value)}
  defp wrap({:error, code, message}, _f), do: error(code, message)

  # The message travels in the process dictionary to the ! variants, which
  # raise with it; the plain functions return the atom alone.
  defp error(code, message) do
    Process.put(:gms_last_error, message)
    {:error, code}
  end

  @doc """
  gms's message for the last `{:error, code}` a `Gms` function returned in
  the calling process (`""` when none).
  """
  @spec last_error() :: String.t()
  def last_error, do: Process.get(:gms_last_error, "")

  defp bang(:ok), do: :ok
  defp bang({:ok, value}), do: value
  defp bang({:error, code}), do: raise(Gms.Error, code: code, message: "#{code}: #{last_error()}")
end
