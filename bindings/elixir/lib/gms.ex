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

  import Bitwise
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
  @type access :: :read | :read_write | :atomic
  @type window_mode :: :read | :read_write
  @type word_type :: :u32 | :s32 | :u64 | :s64
  @type share_id :: pos_integer()
  @type grant :: [
          tenant: String.t() | :owner | :any,
          user: String.t() | :any,
          language: language(),
          mode: access()
        ]

  @levels %{public: 0, internal: 1, confidential: 2, secret: 3}
  @languages %{c: 0, rust: 1, elixir: 2, julia: 3, zig: 4, nim: 5, python: 6, other: 7, any: -1}
  @modes %{read: 1, read_write: 2, atomic: 3}
  @window_modes %{read: 1, read_write: 2}
  # gms_atomic_op; min and max become the _SIGNED ops for :s32 and :s64.
  @atomic_ops %{add: 1, and: 2, or: 3, xor: 4, min: 5, max: 6, exchange: 9, cas: 10}
  @word_types %{u32: {4, false}, s32: {4, true}, u64: {8, false}, s64: {8, true}}
  @unlimited 0xFFFF_FFFF_FFFF_FFFF

  # ---- runtime --------------------------------------------------------------

  @doc """
  Opens the process-wide runtime (`gms_runtime_open(&rt, NULL)`), or with
  `broker: path` a runtime of its own whose memory comes from the gmsd
  listening at `path` (`gms_runtime_options.broker`, docs/broker.md). The
  option wins over the `GMS_BROKER` variable, which the process-wide
  runtime follows; a socket that cannot be reached is `{:error, :backend}`
  (`last_error/0` names the path), never a fallback.
  """
  @spec open(broker: Path.t()) :: {:ok, Runtime.t()} | error()
  def open(opts \\ []) do
    case Keyword.validate!(opts, [:broker]) do
      [] ->
        wrap(Nif.runtime_open(), &%Runtime{ref: &1})

      [broker: path] ->
        wrap(Nif.runtime_open_broker(IO.chardata_to_string(path)), &%Runtime{ref: &1})
    end
  end

  @doc "Like `open/1`, raising `Gms.Error`."
  @spec open!(broker: Path.t()) :: Runtime.t()
  def open!(opts \\ []), do: bang(open(opts))

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
  calling process; `mode` is `:read`, `:read_write` or `:atomic` (reads,
  and writes through the atomics only: any number of atomic holders may
  join the share's one writer; it needs a `:read_write` grant).
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

  # ---- ordering between holders, and atomics (docs/ordering.md) -------------

  @doc """
  Opens an access window on the buffer (`gms_access_begin`): the work this
  holder does until `access_end/1` reads (`:read`) or writes
  (`:read_write`) the buffer, ordered after the conflicting windows of the
  other holders in any language. Readers run together, a writer alone,
  first come first served. A conflicting window still open makes the call
  wait (on a dirty scheduler), or with `wait: false` return
  `{:error, :busy}`. `{:error, :read_only}`: a write window on a handle that
  may not write; `{:error, :invalid_arg}`: the handle has a window already.
  A window belongs to the handle: a buffer released with one open ends it.
  """
  @spec access_begin(Buffer.t(), window_mode(), keyword()) :: :ok | error()
  def access_begin(%Buffer{ref: ref}, mode, opts \\ []) when is_map_key(@window_modes, mode) do
    code = Map.fetch!(@window_modes, mode)

    if Keyword.get(opts, :wait, true),
      do: ok(Nif.access_begin_dirty(ref, code, 0)),
      else: ok(Nif.access_begin(ref, code, 1))
  end

  @doc "Ends the buffer's access window (`gms_access_end`)."
  @spec access_end(Buffer.t()) :: :ok | error()
  def access_end(%Buffer{ref: ref}), do: ok(Nif.access_end(ref))

  @doc """
  Runs `fun` inside an access window of `mode` and returns `{:ok, result}`;
  the window ends however `fun` leaves. Options as `access_begin/3`.

      {:ok, data} = Gms.with_access(buf, :read, fn -> Gms.read!(buf, 0, 16) end)
  """
  @spec with_access(Buffer.t(), window_mode(), (() -> result), keyword()) ::
          {:ok, result} | error()
        when result: term()
  def with_access(buf, mode, fun, opts \\ []) when is_function(fun, 0) do
    with :ok <- access_begin(buf, mode, opts) do
      try do
        {:ok, fun.()}
      after
        access_end(buf)
      end
    end
  end

  @doc """
  One checked atomic operation (`gms_atomic`) on the word at `offset`:
  `op` is `:add`, `:and`, `:or`, `:xor`, `:min`, `:max`, `:exchange` or
  `:cas`. Options: `type:` `:u64` (default), `:s64`, `:u32` or `:s32` (the
  word's width, and whether min and max compare signed); `compare:` for
  `:cas`. Returns `{:ok, old}`, the word's value before, as `type`.
  Refused with `{:error, :invalid_arg}` when `offset` is not a multiple of
  the width or a value does not fit the type, `:out_of_bounds` when the
  word is not wholly inside, `:read_only` for a holder that may not write
  (the writer and `:atomic` holders may).
  """
  @spec atomic(Buffer.t(), atom(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic(%Buffer{ref: ref}, op, offset, operand, opts \\ [])
      when is_integer(offset) and offset >= 0 do
    with {:ok, {width, signed}} <- Map.fetch(@word_types, Keyword.get(opts, :type, :u64)),
         {:ok, code} <- Map.fetch(@atomic_ops, op),
         {:ok, a} <- to_word(operand, width, signed),
         {:ok, c} <- to_word(Keyword.get(opts, :compare, 0), width, signed) do
      code = if signed and op in [:min, :max], do: code + 2, else: code
      wrap(Nif.atomic(ref, offset, code, width, a, c), &from_word(&1, width, signed))
    else
      _ ->
        error(:invalid_arg, "gms: an unknown op or type, or a value that does not fit the type")
    end
  end

  @doc "Adds `value` (wrapping) to the word; `{:ok, old}`. Options as `atomic/5`."
  @spec atomic_add(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_add(buf, offset, value, opts \\ []), do: atomic(buf, :add, offset, value, opts)

  @doc "Bitwise and; `{:ok, old}`."
  @spec atomic_and(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_and(buf, offset, value, opts \\ []), do: atomic(buf, :and, offset, value, opts)

  @doc "Bitwise or; `{:ok, old}`."
  @spec atomic_or(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_or(buf, offset, value, opts \\ []), do: atomic(buf, :or, offset, value, opts)

  @doc "Bitwise xor; `{:ok, old}`."
  @spec atomic_xor(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_xor(buf, offset, value, opts \\ []), do: atomic(buf, :xor, offset, value, opts)

  @doc "The smaller of the word and `value` (signed for `:s32`, `:s64`); `{:ok, old}`."
  @spec atomic_min(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_min(buf, offset, value, opts \\ []), do: atomic(buf, :min, offset, value, opts)

  @doc "The larger of the word and `value`; `{:ok, old}`."
  @spec atomic_max(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_max(buf, offset, value, opts \\ []), do: atomic(buf, :max, offset, value, opts)

  @doc "Stores `value`; `{:ok, old}`."
  @spec atomic_exchange(Buffer.t(), non_neg_integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_exchange(buf, offset, value, opts \\ []),
    do: atomic(buf, :exchange, offset, value, opts)

  @doc "Stores `new` if the word holds `expected`; `{:ok, old}` (`old == expected` iff it swapped)."
  @spec atomic_cas(Buffer.t(), non_neg_integer(), integer(), integer(), keyword()) ::
          {:ok, integer()} | error()
  def atomic_cas(buf, offset, expected, new, opts \\ []),
    do: atomic(buf, :cas, offset, new, Keyword.put(opts, :compare, expected))

  # A value of the type as the unsigned bits gms takes.
  defp to_word(v, width, false) when is_integer(v) and v >= 0 and v < 1 <<< (8 * width),
    do: {:ok, v}

  defp to_word(v, width, true)
       when is_integer(v) and v >= -(1 <<< (8 * width - 1)) and v < 1 <<< (8 * width - 1),
       do: {:ok, v &&& (1 <<< (8 * width)) - 1}

  defp to_word(_, _, _), do: :error

  defp from_word(bits, width, true) when bits >= 1 <<< (8 * width - 1),
    do: bits - (1 <<< (8 * width))

  defp from_word(bits, _width, _signed), do: bits

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
