#!/usr/bin/env python3
"""deploy/kubernetes/recoveryd.yaml and deploy/Dockerfile, checked offline.

No cluster and no schema download: the manifest must parse (PyYAML, Debian's
python3-yaml), and what makes it work must hold together: the StatefulSet
starts its pods in parallel (OrderedReady deadlocks: /ready needs a leader),
its selector, anti-affinity and PodDisruptionBudget match its pods' labels,
the PDB keeps a quorum, the pods run as non-root with a read-only root
filesystem, every mount names a volume, the probes name a port, the headless
raft service publishes unready pods, and the ConfigMap's config parses and
names one peer per replica at its pod's DNS name. The Dockerfile has a
HEALTHCHECK on /health and its entrypoint script is valid sh.

usage: kubernetes_manifest.py SOURCE_DIR       (exits 77 without PyYAML)
"""
import os
import subprocess
import sys
from typing import Any, Dict, List

try:
    import yaml
except ImportError:
    print("SKIP: no PyYAML (python3-yaml)", file=sys.stderr)
    sys.exit(77)

failures: List[str] = []


def check(cond: bool, msg: str) -> None:
    if not cond:
        failures.append(msg)


def matches(selector: Dict[str, str], labels: Dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main() -> None:
    src = sys.argv[1]
    path = os.path.join(src, "deploy", "kubernetes", "recoveryd.yaml")
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    by_kind: Dict[str, List[Dict[str, Any]]] = {}
    for d in docs:
        check("apiVersion" in d and "kind" in d and "name" in d.get("metadata", {}),
              f"a document without apiVersion, kind or metadata.name: {d}")
        by_kind.setdefault(d.get("kind", ""), []).append(d)
    for kind in ("ConfigMap", "StatefulSet", "PodDisruptionBudget"):
        check(len(by_kind.get(kind, [])) == 1, f"expected one {kind}")
    if failures:
        report()
    sts = by_kind["StatefulSet"][0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    replicas = spec["replicas"]

    check(spec.get("podManagementPolicy") == "Parallel",
          "StatefulSet: podManagementPolicy must be Parallel (OrderedReady waits for /ready, "
          "which needs a leader, which needs the pods not yet started)")
    check(matches(spec["selector"]["matchLabels"], labels),
          "StatefulSet: selector does not match the pod labels")

    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    raft = services.get(spec["serviceName"])
    check(raft is not None, f"no Service {spec['serviceName']} (serviceName)")
    if raft is not None:
        check(raft["spec"].get("clusterIP") == "None", "the raft Service must be headless")
        check(raft["spec"].get("publishNotReadyAddresses") is True,
              "the raft Service must publish unready pods (no leader before the peers meet)")
        check(matches(raft["spec"]["selector"], labels), "the raft Service selects no pod")

    sc = pod.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True, "pod securityContext: runAsNonRoot must be true")
    check(sc.get("runAsUser", 0) != 0, "pod securityContext: runAsUser must not be root")
    check("fsGroup" in sc, "pod securityContext: fsGroup must be set (the volumes' group)")

    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = [t.get("podAffinityTerm", t) for key in anti for t in anti[key]]
    check(any(t.get("topologyKey") == "kubernetes.io/hostname" and
              matches(t["labelSelector"]["matchLabels"], labels) for t in terms),
          "no pod anti-affinity on kubernetes.io/hostname matching the pods")

    pdb = by_kind["PodDisruptionBudget"][0]["spec"]
    check(matches(pdb["selector"]["matchLabels"], labels), "the PDB selects no pod")
    quorum = replicas // 2 + 1
    if "maxUnavailable" in pdb:
        check(replicas - int(pdb["maxUnavailable"]) >= quorum,
              f"the PDB lets the quorum ({quorum} of {replicas}) go")
    else:
        check(int(pdb.get("minAvailable", 0)) >= quorum,
              f"the PDB lets the quorum ({quorum} of {replicas}) go")

    volumes = {v["name"] for v in pod.get("volumes", [])}
    volumes |= {v["metadata"]["name"] for v in spec.get("volumeClaimTemplates", [])}
    for c in pod["containers"]:
        csc = c.get("securityContext", {})
        check(csc.get("readOnlyRootFilesystem") is True,
              f"container {c['name']}: readOnlyRootFilesystem must be true")
        check(csc.get("allowPrivilegeEscalation") is False,
              f"container {c['name']}: allowPrivilegeEscalation must be false")
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"container {c['name']}: mount of unknown volume {m['name']}")
        check(any(m["mountPath"] == "/var/lib/recoveryd" for m in c.get("volumeMounts", [])),
              f"container {c['name']}: no volume at the data directory")
        ports = {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            check(port in ports, f"container {c['name']}: {probe} on port {port}, not a containerPort")

    # The config the pods run with: valid YAML, one peer per replica.
    cm = by_kind["ConfigMap"][0]
    cfg = yaml.safe_load(cm["data"]["recoveryd.yaml"])
    peers = cfg["cluster"]["peers"]
    check(len(peers) == replicas, f"{len(peers)} peers for {replicas} replicas")
    for i, p in enumerate(sorted(peers, key=lambda p: p["id"])):
        want = f"{sts['metadata']['name']}-{i}.{spec['serviceName']}:7080"
        check(p["id"] == i + 1 and p["address"] == want,
              f"peer {p}: expected id {i + 1} at {want}")

    dockerfile = open(os.path.join(src, "deploy", "Dockerfile")).read()
    check("\nHEALTHCHECK " in dockerfile and "/health" in dockerfile,
          "deploy/Dockerfile: no HEALTHCHECK on /health")
    entry = os.path.join(src, "deploy", "docker-entrypoint.sh")
    check(subprocess.run(["sh", "-n", entry]).returncode == 0, f"sh -n {entry} failed")
    check("recoveryd-entrypoint" in dockerfile, "deploy/Dockerfile does not use the entrypoint")
    report()


def report() -> None:
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("ok: deploy/kubernetes/recoveryd.yaml and deploy/Dockerfile")
    sys.exit(0)


if __name__ == "__main__":
    main()
