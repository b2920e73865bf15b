#!/bin/sh
# Installs ferry and ferry-server from a release built by .github/workflows/release.yml: picks
# the archive for this machine (uname), checks it against the release's SHA256SUMS, and puts
# both programs in a folder on your PATH. Nothing is installed unless the checksum matches.
#
#   sh install.sh [--dir DIR]
#
# Environment:
#   FERRY_INSTALL_DIR  where to install (default ~/.local/bin; --dir wins)
#   FERRY_VERSION      a release to install, e.g. 0.1.0 (default: the latest)
#   FERRY_RELEASE_URL  where the release's files are: an https:// or file:// URL, or a folder
#                      (default: the GitHub release of the repository this script came from)
#   FERRY_UNAME_S, FERRY_UNAME_M  stand in for `uname -s` and `uname -m`
set -eu

# The release workflow writes the repository (owner/name) here in the copy it publishes.
REPO="@FERRY_REPO@"

say() { printf '%s\n' "install.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

usage() {
  printf '%s\n' "Usage: sh install.sh [--dir DIR]" \
    "Installs ferry and ferry-server (default into ~/.local/bin); see the top of this script."
}

dir="${FERRY_INSTALL_DIR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir)
      [ $# -ge 2 ] || die "--dir needs a folder"
      dir="$2"
      shift 2
      ;;
    --dir=*)
      dir="${1#--dir=}"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
done
if [ -z "$dir" ]; then
  [ -n "${HOME:-}" ] || die "HOME is not set: choose a folder with --dir"
  dir="$HOME/.local/bin"
fi

# Release targets by `uname -s` and `uname -m`. Keep in step with RELEASE_TARGETS in
# scripts/compile.ts (tests/release_test.ts checks); Windows has a .zip instead of this script.
target_for() {
  case "$1 $2" in
    "Linux x86_64" | "Linux amd64") echo "x86_64-unknown-linux-gnu" ;;
    "Linux aarch64" | "Linux arm64") echo "aarch64-unknown-linux-gnu" ;;
    "Darwin x86_64") echo "x86_64-apple-darwin" ;;
    "Darwin arm64" | "Darwin aarch64") echo "aarch64-apple-darwin" ;;
    *) return 1 ;;
  esac
}

os="${FERRY_UNAME_S:-$(uname -s)}"
arch="${FERRY_UNAME_M:-$(uname -m)}"
if [ -z "${FERRY_UNAME_S:-}${FERRY_UNAME_M:-}" ]; then
  # An x86_64 shell under Rosetta on Apple silicon: the native build is the one to run.
  if [ "$os" = Darwin ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
    arch=arm64
  fi
  # The Linux builds link against glibc and do not start on musl (Alpine).
  if [ "$os" = Linux ] && ldd --version 2>&1 | grep -qi musl; then
    die "no build for musl libc (Alpine); run from source with Deno instead"
  fi
fi
case "$os" in
  MINGW* | MSYS* | CYGWIN* | Windows*)
    die "on Windows, download ferry-x86_64-pc-windows-msvc.zip from the release instead"
    ;;
esac
target=$(target_for "$os" "$arch") || die "no ferry build for $os $arch"
archive="ferry-$target.tar.gz"

if [ -n "${FERRY_RELEASE_URL:-}" ]; then
  base="${FERRY_RELEASE_URL%/}"
else
  case "$REPO" in
    @*) die "set FERRY_RELEASE_URL to the release's download URL (this copy names no repository)" ;;
  esac
  if [ -n "${FERRY_VERSION:-}" ]; then
    base="https://github.com/$REPO/releases/download/v${FERRY_VERSION#v}"
  else
    base="https://github.com/$REPO/releases/latest/download"
  fi
fi

# fetch NAME DEST: copies one release file from $base.
fetch() {
  case "$base" in
    http://* | https://*)
      if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$base/$1" 2>/dev/null
      elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$base/$1" 2>/dev/null
      else
        die "neither curl nor wget is installed"
      fi
      ;;
    file://*) cp "${base#file://}/$1" "$2" 2>/dev/null ;;
    *://*) die "cannot download from $base: use https://, file:// or a folder" ;;
    *) cp "$base/$1" "$2" 2>/dev/null ;;
  esac || die "cannot download $1 from $base"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    die "neither sha256sum nor shasum is installed: cannot verify the download"
  fi
}

work=$(mktemp -d 2>/dev/null || mktemp -d -t ferry-install)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

fetch SHA256SUMS "$work/SHA256SUMS"
fetch "$archive" "$work/$archive"
# Lines are "<hex>  <name>" (or "<hex> *<name>" in binary mode).
expected=$(awk -v name="$archive" '$2 == name || $2 == "*" name { print $1; exit }' \
  "$work/SHA256SUMS")
[ -n "$expected" ] || die "SHA256SUMS has no entry for $archive: refusing to install"
actual=$(sha256_of "$work/$archive")
[ "$actual" = "$expected" ] || die "checksum mismatch for $archive: refusing to install"

mkdir "$work/unpacked"
tar -xzf "$work/$archive" -C "$work/unpacked" 2>/dev/null || die "cannot unpack $archive"
for program in ferry ferry-server; do
  [ -f "$work/unpacked/$program" ] || die "$archive has no $program: refusing to install"
done

mkdir -p "$dir" 2>/dev/null || die "cannot create $dir"
for program in ferry ferry-server; do
  # Copied in beside the old one and renamed over it, so a running copy is never cut short.
  staged="$dir/.$program.installing"
  if ! { cp "$work/unpacked/$program" "$staged" && chmod 755 "$staged" &&
    mv -f "$staged" "$dir/$program"; } 2>/dev/null; then
    rm -f "$staged"
    die "cannot write to $dir"
  fi
done

printf '%s\n' "Installed ferry and ferry-server ($target) in $dir"
case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) say "note: $dir is not on your PATH" ;;
esac
