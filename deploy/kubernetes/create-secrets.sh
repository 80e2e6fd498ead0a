#!/usr/bin/env bash
# Put a scaler_keygen directory into the cluster as three Secrets, one per role, each holding only
# what that role reads, and the workers' Pod template into a ConfigMap:
#   scaler_keygen keys     (its manager key pair included; an older directory: scaler_keygen keys --add manager)
#   deploy/kubernetes/create-secrets.sh keys [NAMESPACE]
# Clients keep client.key_secret (and scheduler.key) outside the cluster.
set -euo pipefail
keys=${1:?usage: create-secrets.sh KEYS_DIR [NAMESPACE]}
namespace=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
for file in scheduler.key scheduler.key_secret allowed_keys worker.key_secret manager.key_secret; do
    [[ -f "$keys/$file" ]] || { echo "missing $keys/$file (scaler_keygen DIR; scaler_keygen DIR --add manager)" >&2; exit 1; }
done
kubectl=(kubectl ${namespace:+--namespace "$namespace"})
"${kubectl[@]}" create secret generic scaler-scheduler-keys \
    --from-file="$keys/scheduler.key_secret" --from-file="$keys/scheduler.key" --from-file="$keys/allowed_keys"
"${kubectl[@]}" create secret generic scaler-worker-keys \
    --from-file="$keys/worker.key_secret" --from-file="$keys/scheduler.key"
"${kubectl[@]}" create secret generic scaler-manager-keys \
    --from-file="$keys/manager.key_secret" --from-file="$keys/worker.key_secret" --from-file="$keys/scheduler.key"
"${kubectl[@]}" create configmap scaler-worker-template --from-file=worker-pod.yaml="$here/worker-pod.yaml"
