defmodule Gms.Error do
  @moduledoc """
  Raised by the `!` functions of `Gms`: `code` is the atom of the
  `GMS_E_*` code (`:out_of_bounds` for `GMS_E_OUT_OF_BOUNDS`), `message`
  what gms said about it.
  """
  defexception [:code, :message]

  @type t :: %__MODULE__{code: Gms.error_code(), message: String.t()}
end
