#!/usr/bin/env bash
# The interop suite: builds mqnamesrv and mqbroker, installs the real RocketMQ client
# (PyPI `rocketmq`, which bundles Apache's C++ client) into a venv under target/, and runs
# tests/interop/interop.py against the built binaries. Ends with `interop: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/interop-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import rocketmq.client' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

cargo build -p keel-runtime-tokio --bins --locked
# The C++ client writes its own logs under $HOME/logs; keep them inside target/.
mkdir -p target/interop-home
HOME="$PWD/target/interop-home" "$venv/bin/python" tests/interop/interop.py target/debug
