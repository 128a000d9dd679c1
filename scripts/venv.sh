# scripts/venv.sh, sourced: make_venv DIR makes a Python virtual environment
# at DIR unless one is there, installing Debian's python3-venv first when
# this Python cannot make one (a fresh machine). Uses $PY (default python3).
make_venv() {
  local py=${PY:-python3}
  [ -x "$1/bin/python" ] && return 0
  if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv python3-pip"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv python3-pip >/dev/null
    py=/usr/bin/python3
  fi
  "$py" -m venv "$1"
}
