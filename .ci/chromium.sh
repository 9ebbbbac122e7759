# Sourced by .ci/run: the headless browser tests/browser drives (the web console).
#
# Installs the distribution's Chromium if it is missing and exports
#   AGENT_RUNTIME_TEST_CHROMIUM   the chromium executable (driven over the DevTools protocol)

if ! command -v chromium >/dev/null 2>&1; then
    echo "ci: installing Chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
export AGENT_RUNTIME_TEST_CHROMIUM="$(command -v chromium)"
[ -x "$AGENT_RUNTIME_TEST_CHROMIUM" ] || { echo "ci: chromium did not install" >&2; return 1; }
echo "ci: $("$AGENT_RUNTIME_TEST_CHROMIUM" --version 2>/dev/null)" >&2
