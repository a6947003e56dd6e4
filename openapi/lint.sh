#!/bin/sh
# lint.sh DOCUMENT: `redocly lint` (pinned in openapi/package.json, with openapi/redocly.yaml) on
# a layer's merged OpenAPI document; a ctest of each layer (layers_openapi in CMakeLists.txt).
# Skipped (77) when the npm tools are not installed, except in CI, where that is a failure.
npm_dir=${LAYERS_NPM_DIR:-}
redocly=$npm_dir/node_modules/.bin/redocly
if [ -z "$npm_dir" ] || [ ! -x "$redocly" ]; then
    echo "redocly is not installed: ./layers deps installs it, ./layers test sets LAYERS_NPM_DIR"
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true exec "$redocly" lint \
    --config "$(dirname "$0")/redocly.yaml" --format=stylish "$1"
