#!/usr/bin/env bash
# The real services the test suite starts: headless Chromium (the live view's page) and the
# Mosquitto MQTT broker, from Debian. Each that is present prints one line and is skipped.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
if [ ${#missing[@]} -eq 0 ]; then
    echo "test services: chromium and mosquitto found; skipping install"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "test services: installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "test services: ${missing[*]} missing; run: sudo apt-get install ${missing[*]}"
    exit 1
fi
