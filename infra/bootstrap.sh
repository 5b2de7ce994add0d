#!/usr/bin/env bash
# Prepares a Debian machine to build and test bpfleet: system packages, bpffs, node modules,
# BPF objects. Idempotent, and quick when everything is already there (nothing is installed
# or fetched then). Every failure prints one line saying what is missing and how to fix it.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { echo "bootstrap: $*"; }
fail() { echo "bootstrap: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "not root: BPF, network namespaces and apt-get need root (run: sudo infra/bootstrap.sh)"

command -v node >/dev/null 2>&1 || fail "node not found: install Node.js 20 or newer"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node.js $(node -v) is too old: install Node.js 20 or newer"
command -v npm >/dev/null 2>&1 || fail "npm not found: install npm (it ships with Node.js)"

# python3 runs the fastest benchmark traffic sender (dev/traffic.ts); python3-grpcio and
# python3-protobuf a gRPC client that is not grpc-js (e2e/reflection.test.ts).
# systemd brings systemd-analyze, which checks the units in infra/systemd/.
packages=(etcd-server etcd-client nats-server clang llvm libbpf-dev libbpf1 bpftool iproute2 iperf3 hping3 util-linux python3 python3-grpcio python3-protobuf systemd)
missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install ${missing[*]} by hand (bpfleet expects Debian)"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed: check the package sources in /etc/apt"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed: see the apt-get output above"
fi
for c in etcd etcdctl nats-server clang bpftool ip iperf3 hping3 nsenter timeout python3 systemd-analyze; do
  command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || fail "$c not found after installing packages: check PATH (it should include /usr/sbin)"
done
# Debian's python3-* modules live in /usr/bin/python3's path, whatever python3 comes first on PATH.
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null \
  || fail "/usr/bin/python3 cannot import grpc and protobuf: apt-get install --reinstall python3-grpcio python3-protobuf"

if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null \
    || fail "cannot mount bpffs at /sys/fs/bpf: the kernel needs CONFIG_BPF_SYSCALL and this process CAP_SYS_ADMIN (a container needs --privileged)"
fi

bpf_err=$(bpftool prog show 2>&1 >/dev/null) \
  || fail "the bpf() syscall is not usable (bpftool prog show: ${bpf_err:-failed}): needs CAP_BPF/CAP_SYS_ADMIN and a kernel with CONFIG_BPF_SYSCALL"

probe="bpfleet-probe-$$"
netns_err=$(ip netns add "$probe" 2>&1) \
  || fail "network namespaces are not usable (ip netns add: $netns_err): needs CAP_NET_ADMIN and CONFIG_NET_NS"
ip netns del "$probe"

# npm writes node_modules/.package-lock.json on every install: older than package-lock.json
# means the lock changed since.
if [ -f package-lock.json ]; then
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed: see the npm output above"
  fi
elif [ ! -d node_modules ]; then
  say "npm install (no package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error || fail "npm install failed: see the npm output above"
fi

make -s -C agent/bpf || fail "building the BPF modules in agent/bpf failed: see the compiler output above"

say "ready"
