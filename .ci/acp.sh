# Sourced by .ci/run: the real ACP clients the tests drive `agent-runtime acp` with.
#
# Installs Node.js and npm from the distribution's packages if `node` is missing,
# installs the pinned clients of .ci/acp/package-lock.json into .ci/acp/node_modules
# (git-ignored) with `npm ci`, and exports
#   AGENT_RUNTIME_TEST_ACPX        the acpx executable (tests/acp/test_acpx.py)
#   AGENT_RUNTIME_TEST_ACP_SCHEMA  the stable ACP v1 JSON schema of @agentclientprotocol/sdk

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ci: installing Node.js and npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi

# The lock's entries for @openclaw/fs-safe's native packages of other systems
# (darwin, win32, linux-arm64; an optional dependency of acpx) are written by hand,
# without integrity: the registry this project's machines reach serves only the
# linux-x64 ones, and `npm ci` refuses a lock that lacks any optional dependency.
# npm skips them on linux-x64 and fetches (unverified) the one a Mac or Windows
# needs. After `npm install` regenerates the lock, add them back.
ACP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/acp" && pwd)"
(cd "$ACP_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

export AGENT_RUNTIME_TEST_ACPX="$ACP_DIR/node_modules/.bin/acpx"
export AGENT_RUNTIME_TEST_ACP_SCHEMA="$ACP_DIR/node_modules/@agentclientprotocol/sdk/schema/v1/schema.json"
[ -x "$AGENT_RUNTIME_TEST_ACPX" ] || { echo "ci: acpx did not install" >&2; return 1; }
echo "ci: acpx $("$AGENT_RUNTIME_TEST_ACPX" --version 2>/dev/null) on node $(node --version)" >&2
