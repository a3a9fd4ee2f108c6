#!/bin/sh
# The container's entrypoint: gives a pod of the StatefulSet its identity
# in the cluster, then replaces itself with strom (exec: strom is PID 1 and
# gets the SIGTERM that Kubernetes sends, so it shuts down controlled).
#
# Every node is a combined broker and controller voter. From the pod's name
# (STATEFULSET-ORDINAL: $POD_NAME, else $HOSTNAME, else the kernel's
# hostname), the replica count and the headless Service it derives, in
# Strom's STROM_<KEY> environment variables (README, "Configuration"):
#
#   node.id                    ORDINAL + 1 (strom-0 is node 1)
#   controller.quorum.voters   1@STATEFULSET-0.SERVICE.NAMESPACE.svc.DOMAIN:9093,
#                              2@STATEFULSET-1...., one per replica
#   advertised.listeners       PLAINTEXT://POD.SERVICE.NAMESPACE.svc.DOMAIN:9092
#   listeners                  PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
#   controller.listener.names  CONTROLLER
#   process.roles              broker,controller
#   log.dirs                   /var/lib/strom/data (the volume's subdirectory)
#   http.listen                0.0.0.0:9404 (/metrics, /health/live, /health/ready)
#
# It reads:
#
#   STROM_REPLICAS            the StatefulSet's replicas: the voters (required)
#   POD_NAMESPACE             the pod's namespace (required; the downward API)
#   STROM_HEADLESS_SERVICE    the headless Service (default STATEFULSET-headless)
#   STROM_CLUSTER_DOMAIN      the cluster's DNS domain (default cluster.local)
#
# A variable the operator has set already (STROM_NODE_ID,
# STROM_ADVERTISED_LISTENERS, ...) is left as it is, and then nothing it
# would have been derived from is needed; flags given as arguments (they
# are passed to strom) outrank every variable. Keys in a --config file do
# not: the variables above outrank them, so set those keys as variables.
#
# Without STROM_REPLICAS and STROM_CONTROLLER_QUORUM_VOTERS (a plain
# `docker run`) it starts one node: listeners PLAINTEXT://0.0.0.0:9092
# (advertised as 127.0.0.1:9092 unless STROM_ADVERTISED_LISTENERS says
# otherwise), the same log.dirs and http.listen.
set -eu

die() {
    echo "strom entrypoint: $*" >&2
    exit 64
}

: "${STROM_LOG_DIRS:=/var/lib/strom/data}"
: "${STROM_HTTP_LISTEN:=0.0.0.0:9404}"
export STROM_LOG_DIRS STROM_HTTP_LISTEN

if [ -z "${STROM_REPLICAS:-}" ] && [ -z "${STROM_CONTROLLER_QUORUM_VOTERS:-}" ]; then
    : "${STROM_LISTENERS:=PLAINTEXT://0.0.0.0:9092}"
    : "${STROM_ADVERTISED_LISTENERS:=PLAINTEXT://127.0.0.1:9092}"
    export STROM_LISTENERS STROM_ADVERTISED_LISTENERS
    echo "strom entrypoint: STROM_REPLICAS is not set: one node, not a StatefulSet's" >&2
    exec strom "$@"
fi

# $HOSTNAME is the variable the container runtime sets (the pod's name), not
# the shell's.
# shellcheck disable=SC3028
pod="${POD_NAME:-${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}}"
statefulset="${pod%-*}"
ordinal="${pod##*-}"
case "$pod" in
    ?*-[0-9]*) ;;
    *) ordinal="" ;;
esac
case "$ordinal" in
    *[!0-9]*) ordinal="" ;;
esac
need_ordinal() {
    [ -n "$ordinal" ] || die "the pod name '$pod' is not STATEFULSET-ORDINAL: set $1 yourself"
}
service="${STROM_HEADLESS_SERVICE:-$statefulset-headless}"
domain="${STROM_CLUSTER_DOMAIN:-cluster.local}"
need_namespace() {
    [ -n "${POD_NAMESPACE:-}" ] \
        || die "POD_NAMESPACE is not set (give it the pod's metadata.namespace through the downward API), or set $1 yourself"
}
# The stable name of the pod with ordinal $1: the headless Service's record.
dns_name() {
    echo "$statefulset-$1.$service.$POD_NAMESPACE.svc.$domain"
}

if [ -z "${STROM_NODE_ID:-}" ]; then
    need_ordinal STROM_NODE_ID
    STROM_NODE_ID=$((ordinal + 1))
    export STROM_NODE_ID
fi

if [ -z "${STROM_CONTROLLER_QUORUM_VOTERS:-}" ]; then
    need_ordinal STROM_CONTROLLER_QUORUM_VOTERS
    need_namespace STROM_CONTROLLER_QUORUM_VOTERS
    replicas="${STROM_REPLICAS:-}"
    case "$replicas" in
        '' | *[!0-9]* | 0*) die "STROM_REPLICAS must be the StatefulSet's replica count (got '$replicas'), or set STROM_CONTROLLER_QUORUM_VOTERS yourself" ;;
    esac
    [ "$ordinal" -lt "$replicas" ] \
        || die "pod $pod has ordinal $ordinal, but STROM_REPLICAS=$replicas: the voter set is fixed when the quorum forms (deploy/README.md, scaling)"
    voters=""
    i=0
    while [ "$i" -lt "$replicas" ]; do
        voters="$voters${voters:+,}$((i + 1))@$(dns_name "$i"):9093"
        i=$((i + 1))
    done
    STROM_CONTROLLER_QUORUM_VOTERS="$voters"
    export STROM_CONTROLLER_QUORUM_VOTERS
fi

if [ -z "${STROM_ADVERTISED_LISTENERS:-}" ] && [ -z "${STROM_ADVERTISE:-}" ]; then
    need_ordinal STROM_ADVERTISED_LISTENERS
    need_namespace STROM_ADVERTISED_LISTENERS
    STROM_ADVERTISED_LISTENERS="PLAINTEXT://$(dns_name "$ordinal"):9092"
    export STROM_ADVERTISED_LISTENERS
fi

: "${STROM_LISTENERS:=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093}"
: "${STROM_CONTROLLER_LISTENER_NAMES:=CONTROLLER}"
: "${STROM_PROCESS_ROLES:=broker,controller}"
export STROM_LISTENERS STROM_CONTROLLER_LISTENER_NAMES STROM_PROCESS_ROLES

echo "strom entrypoint: pod $pod is node $STROM_NODE_ID, advertised as ${STROM_ADVERTISED_LISTENERS:-$STROM_ADVERTISE}; voters $STROM_CONTROLLER_QUORUM_VOTERS" >&2
exec strom "$@"
