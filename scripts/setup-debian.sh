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
  mmdebstrap        # toolchain roots for kernels the host cannot build for (5.10: gcc-10, 7.x: gcc-16)
  debian-archive-keyring  # verifies what those roots (and the fetched kernels) are made of
  xz-utils          # unpacks the bzImage into a vmlinux that boots ~2 s faster under TCG
  cpio              # only for inspecting initramfs images by hand; the harness writes cpio itself
  ca-certificates
)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
