#!/bin/sh
# The push credentials of the Registry in registry.yaml: a robot account that may push to the
# projects Kapsa builds into. The token comes from the environment, not from shell history.
set -eu
: "${HARBOR_PUSH_TOKEN:?set HARBOR_PUSH_TOKEN to the robot account token}"
kubectl create secret docker-registry harbor-push-credentials \
  --namespace kapsa-system \
  --docker-server=harbor.corp.com \
  --docker-username='robot$kapsa' \
  --docker-password="$HARBOR_PUSH_TOKEN"
