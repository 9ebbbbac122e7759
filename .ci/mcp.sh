# Sourced by .ci/run: real MCP servers the tests mount into the runtime (tests/mcp).
#
# mcp-server-time (PyPI) comes with the dev extra that nox installs. This installs
# the pinned @modelcontextprotocol/server-everything of .ci/mcp/package-lock.json
# (stdio and streamable HTTP) into .ci/mcp/node_modules (git-ignored) with `npm ci`,
# using the Node.js that .ci/acp.sh made sure of, and exports
#   AGENT_RUNTIME_TEST_MCP_EVERYTHING   the mcp-server-everything executable

MCP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/mcp" && pwd)"
(cd "$MCP_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

export AGENT_RUNTIME_TEST_MCP_EVERYTHING="$MCP_DIR/node_modules/.bin/mcp-server-everything"
[ -x "$AGENT_RUNTIME_TEST_MCP_EVERYTHING" ] || { echo "ci: server-everything did not install" >&2; return 1; }
echo "ci: MCP server-everything $(node -p "require('$MCP_DIR/node_modules/@modelcontextprotocol/server-everything/package.json').version")" >&2
