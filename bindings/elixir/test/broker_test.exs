defmodule BrokerTest do
  # Gms.open(broker: path): a runtime of its own on gms_runtime_options.broker
  # (docs/broker.md), with a gmsd of the test's own from GMS_LIB_DIR (test.sh
  # builds it there with libgms).
  use ExUnit.Case, async: true

  test "broker: wrong values are refused, an unreachable socket is named" do
    assert {:error, :backend} = Gms.open(broker: "/nonexistent/elixir-gmsd.sock")

    assert Gms.last_error() =~
             "gms_runtime_options.broker=/nonexistent/elixir-gmsd.sock: cannot connect to gmsd"

    assert {:error, :invalid_arg} = Gms.open(broker: "")
    assert Gms.last_error() =~ ~s(gms_runtime_options.broker is "")
    assert {:error, :invalid_arg} = Gms.open(broker: "/run/gms\0/gmsd.sock")
    assert Gms.last_error() =~ "NUL"
    err = assert_raise Gms.Error, fn -> Gms.open!(broker: "/nonexistent/gmsd.sock") end
    assert err.code == :backend
    assert_raise ArgumentError, fn -> Gms.open(brokr: "/run/gms/gmsd.sock") end
  end

  test "broker: the runtime's memory comes from gmsd" do
    {sock, port} = start_gmsd()
    rt = Gms.open!(broker: sock)
    assert Gms.backend(rt) == "broker"
    ctx = Gms.context!(rt, tenant: "self", user: "u")
    buf = Gms.alloc!(ctx, 4096)
    :ok = Gms.write(buf, 0, "through gmsd")
    assert Gms.read!(buf, 0, 12) == "through gmsd"
    :ok = Gms.free(buf)
    # A charlist path works too (Path.t()).
    assert Gms.backend(Gms.open!(broker: String.to_charlist(sock))) == "broker"
    stop_gmsd(port)
  end

  defp start_gmsd do
    gmsd = Path.join(System.get_env("GMS_LIB_DIR", "../../build"), "gmsd")
    unless File.exists?(gmsd), do: flunk("no gmsd at #{gmsd}: it is built with libgms")
    dir = Path.join(System.tmp_dir!(), "gms-elixir-gmsd-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    {uid, 0} = System.cmd("id", ["-u"])

    File.write!(
      Path.join(dir, "policy.json"),
      ~s({"lease_bytes": 2097152, "tenants": [{"name": "self", "uids": [#{String.trim(uid)}], ) <>
        ~s("quota_bytes": 8388608, "quota_leases": 4}]})
    )

    sock = Path.join(dir, "gmsd.sock")

    port =
      Port.open({:spawn_executable, gmsd}, [
        :exit_status,
        args: ["--policy", Path.join(dir, "policy.json"), "--socket", sock]
      ])

    # Stopped however the test ends: a gmsd left running would hold the
    # test run's output pipe open.
    {:os_pid, pid} = Port.info(port, :os_pid)
    on_exit(fn -> System.cmd("kill", [Integer.to_string(pid)], stderr_to_stdout: true) end)
    wait_for(sock, 500)
    {sock, port}
  end

  defp wait_for(sock, 0), do: flunk("gmsd did not make #{sock}")

  defp wait_for(sock, tries) do
    unless File.exists?(sock), do: Process.sleep(10) && wait_for(sock, tries - 1)
  end

  defp stop_gmsd(port) do
    {:os_pid, pid} = Port.info(port, :os_pid)
    {_, 0} = System.cmd("kill", [Integer.to_string(pid)])

    receive do
      {^port, {:exit_status, status}} -> assert status == 0
    after
      5_000 -> flunk("gmsd did not stop")
    end
  end
end
