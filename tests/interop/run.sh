#!/usr/bin/env bash
# The interop suite: builds the binaries, installs the real RocketMQ clients into venvs
# under target/ (PyPI `rocketmq`, which bundles Apache's C++ remoting client; and
# `rocketmq-python-client`, the official 5.x gRPC SDK, in a venv of its own because both
# are the Python package `rocketmq`), runs tests/interop/interop.py and grpc_interop.py
# against them, and ends with one `interop: N passed, M failed` for both.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/interop-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import rocketmq.client' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

venv_grpc=target/interop-venv-grpc
if [ ! -x "$venv_grpc/bin/python" ] || ! "$venv_grpc/bin/python" -c 'import rocketmq.v5' 2>/dev/null; then
  rm -rf "$venv_grpc"
  python3 -m venv "$venv_grpc"
  "$venv_grpc/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements-grpc.txt
fi

cargo build -p keel-runtime-tokio --bins --locked
# The C++ client writes its own logs under $HOME/logs; keep them inside target/.
mkdir -p target/interop-home
status=0
HOME="$PWD/target/interop-home" "$venv/bin/python" tests/interop/interop.py target/debug \
  | tee target/interop-remoting.log || status=1
"$venv_grpc/bin/python" tests/interop/grpc_interop.py target/debug | tee target/interop-grpc.log || status=1
cat target/interop-remoting.log target/interop-grpc.log | awk '
  /^interop(-grpc)?: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
  END { printf "interop: %d passed, %d failed\n", p, f }'
exit $status
