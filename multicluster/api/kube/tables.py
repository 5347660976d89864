"""Table (meta.k8s.io) rows: what `kubectl get` prints, with the cluster as the first column.

A kube-apiserver renders tables itself, so kubectl shows per-kind columns (pods: READY STATUS RESTARTS AGE) and a
CRD's additionalPrinterColumns. We render the same columns from the stored objects, in the same order, with the
same priorities (priority 1 = only with `-o wide`) and the same cell text, following what the API server's
printers compute; CLUSTER comes first. Types without a printer here get NAME and AGE.

Ages, the JSONPath subset and a CRD column's cell come from multicluster/columns.py, which the plugin's client-side
tables use too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from multicluster.api.kube.discovery import KubeResource
from multicluster.columns import age as _age
from multicluster.columns import get, human_duration, parse_time, printer_cell, priority, since
from multicluster.types import KubeObject, TableColumnDefinition

Obj = KubeObject
Cell = Any
Render = Callable[[Obj, float], Cell]


def _col(name: str, description: str, priority: int = 0, type_: str = "string", fmt: str = "") -> TableColumnDefinition:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


CLUSTER = _col("Cluster", "The member cluster the object lives in (annotation multicluster.practice.com/cluster)")
NAME = _col("Name", "Name must be unique within a namespace.", fmt="name")
AGE = _col("Age", "CreationTimestamp is when the object was created.")


# ------------------------------------------------------------------------------------------------ cell helpers


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted `k=v` pairs, or <none>."""
    d = _dict(labels)
    return ",".join(f"{k}={d[k]}" for k in sorted(d)) or "<none>"


def format_selector(sel: Any) -> str:
    """metav1.FormatLabelSelector: matchLabels then matchExpressions, <none> when empty."""
    if not isinstance(sel, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted(_dict(sel.get("matchLabels")).items())]
    for e in _list(sel.get("matchExpressions")):
        op = str(_dict(e).get("operator", "")).lower()
        key, values = e.get("key", ""), ",".join(str(v) for v in _list(e.get("values")))
        if op in ("in", "notin"):
            parts.append(f"{key} {op} ({values})")
        elif op == "exists":
            parts.append(str(key))
        elif op == "doesnotexist":
            parts.append(f"!{key}")
    text = ",".join(parts)
    return text or "<none>"


def _containers(spec: Any, key: str) -> str:
    return ",".join(str(_dict(c).get(key, "")) for c in _list(_dict(spec).get("containers")))


def _template(obj: Obj) -> Any:
    return get(obj, "spec", "template", "spec")


# ------------------------------------------------------------------------------------------------ per kind


def _pod_cells(o: Obj, now: float) -> list[Cell]:
    spec, status = _dict(o.get("spec")), _dict(o.get("status"))
    containers = _list(spec.get("containers"))
    restartable_init = [c for c in _list(spec.get("initContainers")) if _dict(c).get("restartPolicy") == "Always"]
    total = len(containers) + len(restartable_init)
    ready = restarts = 0
    last_restart: float | None = None
    reason = str(status.get("reason") or status.get("phase") or "")
    for cond in _list(status.get("conditions")):
        c = _dict(cond)
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    initializing = False
    init_statuses = _list(status.get("initContainerStatuses"))
    init_specs = _list(spec.get("initContainers"))
    for i, cs in enumerate(init_statuses):
        c = _dict(cs)
        restarts += _int(c.get("restartCount"))
        last_restart = _later(last_restart, get(c, "lastState", "terminated", "finishedAt"))
        term, wait = get(c, "state", "terminated"), get(c, "state", "waiting")
        sidecar = i < len(init_specs) and _dict(init_specs[i]).get("restartPolicy") == "Always"
        if isinstance(term, dict) and _int(term.get("exitCode")) == 0:
            continue
        if sidecar and c.get("started"):
            if c.get("ready"):
                ready += 1
            continue
        if isinstance(term, dict):
            if term.get("reason"):
                reason = f"Init:{term['reason']}"
            elif _int(term.get("signal")):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{_int(term.get('exitCode'))}"
        elif isinstance(wait, dict) and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = f"Init:{wait['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    initialized = any(_dict(c).get("type") == "Initialized" and _dict(c).get("status") == "True"
                      for c in _list(status.get("conditions")))
    if not initializing or initialized:
        has_running = False
        for cs in reversed(_list(status.get("containerStatuses"))):
            c = _dict(cs)
            restarts += _int(c.get("restartCount"))
            last_restart = _later(last_restart, get(c, "lastState", "terminated", "finishedAt"))
            wait, term, running = (get(c, "state", "waiting"), get(c, "state", "terminated"),
                                   get(c, "state", "running"))
            if isinstance(wait, dict) and wait.get("reason"):
                reason = str(wait["reason"])
            elif isinstance(term, dict) and term.get("reason"):
                reason = str(term["reason"])
            elif isinstance(term, dict):
                reason = (f"Signal:{term['signal']}" if _int(term.get("signal"))
                          else f"ExitCode:{_int(term.get('exitCode'))}")
            elif c.get("ready") and isinstance(running, dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(_dict(c).get("type") == "Ready" and _dict(c).get("status") == "True"
                            for c in _list(status.get("conditions")))
            reason = "Running" if pod_ready else "NotReady"
    if get(o, "metadata", "deletionTimestamp") is not None:
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    ips = _list(status.get("podIPs"))
    ip = str(_dict(ips[0]).get("ip") or "") if ips else ""
    gates = _list(spec.get("readinessGates"))
    gates_text = "<none>"
    if gates:
        conds = {(_dict(c).get("type")): _dict(c).get("status") for c in _list(status.get("conditions"))}
        true = sum(1 for g in gates if conds.get(_dict(g).get("conditionType")) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [f"{ready}/{total}", reason, restarts_text, since(get(o, "metadata", "creationTimestamp"), now),
            ip or "<none>", spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            gates_text]


def _later(current: float | None, ts: Any) -> float | None:
    t = parse_time(ts)
    if t is None:
        return current
    return t if current is None else max(current, t)


def _deployment_cells(o: Obj, now: float) -> list[Cell]:
    spec, st = _dict(o.get("spec")), _dict(o.get("status"))
    desired = _int(spec.get("replicas")) if "replicas" in spec else 1
    return [f"{_int(st.get('readyReplicas'))}/{desired}", _int(st.get("updatedReplicas")),
            _int(st.get("availableReplicas")), _age(o, now), _containers(_template(o), "name"),
            _containers(_template(o), "image"), format_selector(spec.get("selector"))]


def _replicaset_cells(o: Obj, now: float) -> list[Cell]:
    spec, st = _dict(o.get("spec")), _dict(o.get("status"))
    desired = _int(spec.get("replicas")) if "replicas" in spec else 1
    return [desired, _int(st.get("replicas")), _int(st.get("readyReplicas")), _age(o, now),
            _containers(_template(o), "name"), _containers(_template(o), "image"),
            format_selector(spec.get("selector"))]


def _statefulset_cells(o: Obj, now: float) -> list[Cell]:
    spec, st = _dict(o.get("spec")), _dict(o.get("status"))
    desired = _int(spec.get("replicas")) if "replicas" in spec else 1
    return [f"{_int(st.get('readyReplicas'))}/{desired}", _age(o, now), _containers(_template(o), "name"),
            _containers(_template(o), "image")]


def _daemonset_cells(o: Obj, now: float) -> list[Cell]:
    st = _dict(o.get("status"))
    return [_int(st.get("desiredNumberScheduled")), _int(st.get("currentNumberScheduled")),
            _int(st.get("numberReady")), _int(st.get("updatedNumberScheduled")), _int(st.get("numberAvailable")),
            format_labels(_dict(_template(o)).get("nodeSelector")), _age(o, now),
            _containers(_template(o), "name"), _containers(_template(o), "image"),
            format_selector(get(o, "spec", "selector"))]


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    kind = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in _list(spec.get("externalIPs"))]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = [str(_dict(i).get("ip") or _dict(i).get("hostname") or "")
                   for i in _list(get(status, "loadBalancer", "ingress"))]
        found = [x for x in ingress + external if x]
        return ",".join(found) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service_cells(o: Obj, now: float) -> list[Cell]:
    spec, st = _dict(o.get("spec")), _dict(o.get("status"))
    ports = []
    for p in _list(spec.get("ports")):
        pd = _dict(p)
        node = f":{pd['nodePort']}" if _int(pd.get("nodePort")) else ""
        ports.append(f"{_int(pd.get('port'))}{node}/{pd.get('protocol') or 'TCP'}")
    cluster_ip = spec.get("clusterIP") or "<none>"
    return [spec.get("type") or "ClusterIP", cluster_ip, _service_external_ip(spec, st), ",".join(ports) or "<none>",
            _age(o, now), format_labels(spec.get("selector"))]


def _namespace_cells(o: Obj, now: float) -> list[Cell]:
    return [get(o, "status", "phase") or "", _age(o, now)]


def _configmap_cells(o: Obj, now: float) -> list[Cell]:
    return [len(_dict(o.get("data"))) + len(_dict(o.get("binaryData"))), _age(o, now)]


def _serviceaccount_cells(o: Obj, now: float) -> list[Cell]:
    return [len(_list(o.get("secrets"))), _age(o, now)]


def _has_condition(st: Mapping[str, Any], kind: str) -> bool:
    return any(_dict(c).get("type") == kind and _dict(c).get("status") == "True" for c in _list(st.get("conditions")))


def _job_cells(o: Obj, now: float) -> list[Cell]:
    spec, st = _dict(o.get("spec")), _dict(o.get("status"))
    if _has_condition(st, "Complete"):
        status = "Complete"
    elif _has_condition(st, "Failed"):
        status = "Failed"
    elif get(o, "metadata", "deletionTimestamp") is not None:
        status = "Terminating"
    elif _has_condition(st, "SuccessCriteriaMet"):
        status = "SuccessCriteriaMet"
    elif _has_condition(st, "FailureTarget"):
        status = "FailureTarget"
    elif _has_condition(st, "Suspended"):
        status = "Suspended"
    else:
        status = "Running"
    succeeded = _int(st.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec.get('completions'))}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec.get('parallelism'))}"
    else:
        completions = f"{succeeded}/1"
    start, done = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration((done if done is not None else now) - start)
    return [status, completions, duration, _age(o, now), _containers(_template(o), "name"),
            _containers(_template(o), "image"), format_selector(spec.get("selector"))]


def _cronjob_cells(o: Obj, now: float) -> list[Cell]:
    spec, st = _dict(o.get("spec")), _dict(o.get("status"))
    last = st.get("lastScheduleTime")
    job_spec = get(spec, "jobTemplate", "spec")
    return [spec.get("schedule") or "", spec.get("timeZone") or "<none>", "True" if spec.get("suspend") else "False",
            len(_list(st.get("active"))), since(last, now) if last else "<none>", _age(o, now),
            _containers(get(job_spec, "template", "spec"), "name"),
            _containers(get(job_spec, "template", "spec"), "image"),
            format_selector(get(job_spec, "selector"))]


def _node_cells(o: Obj, now: float) -> list[Cell]:
    st = _dict(o.get("status"))
    conds = [_dict(c) for c in _list(st.get("conditions"))]
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    status = ["Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"]
    if get(o, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    labels = _dict(get(o, "metadata", "labels"))
    roles = {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]}
    if labels.get("kubernetes.io/role"):
        roles.add(str(labels["kubernetes.io/role"]))
    addresses = [_dict(a) for a in _list(st.get("addresses"))]

    def addr(kind: str) -> str:
        return next((str(a.get("address")) for a in addresses if a.get("type") == kind), "<none>")

    info = _dict(st.get("nodeInfo"))
    return [",".join(status), ",".join(sorted(roles)) or "<none>", _age(o, now), info.get("kubeletVersion", ""),
            addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


_AGE_DESC = AGE["description"]
_CONTAINERS = _col("Containers", "Names of each container in the template.", 1)
_IMAGES = _col("Images", "Images referenced by each container in the template.", 1)
_SELECTOR = _col("Selector", "Label selector for the pods.", 1)

PRINTERS: dict[tuple[str, str], tuple[list[TableColumnDefinition], Render]] = {
    ("", "pods"): ([_col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
                    _col("Status", "The aggregate status of the containers in this pod."),
                    _col("Restarts", "The number of times the containers in this pod have been restarted and "
                         "when the last container in this pod has restarted."),
                    AGE,
                    _col("IP", "IP address allocated to the pod.", 1),
                    _col("Node", "Name of the node the pod is assigned to.", 1),
                    _col("Nominated Node", "Name of the node the pod is nominated to, if any.", 1),
                    _col("Readiness Gates", "Pod readiness gates.", 1)], _pod_cells),
    ("apps", "deployments"): ([_col("Ready", "Number of the pod with ready state"),
                               _col("Up-to-date", "Total number of non-terminated pods targeted by this deployment "
                                    "that have the desired template spec.", type_="integer"),
                               _col("Available", "Total number of available pods (ready for at least "
                                    "minReadySeconds) targeted by this deployment.", type_="integer"),
                               AGE, _CONTAINERS, _IMAGES, _SELECTOR], _deployment_cells),
    ("apps", "replicasets"): ([_col("Desired", "Number of desired pods.", type_="integer"),
                               _col("Current", "Number of actual replicas.", type_="integer"),
                               _col("Ready", "The number of ready replicas.", type_="integer"),
                               AGE, _CONTAINERS, _IMAGES, _SELECTOR], _replicaset_cells),
    ("apps", "statefulsets"): ([_col("Ready", "Number of the pod with ready state"), AGE, _CONTAINERS, _IMAGES],
                               _statefulset_cells),
    ("apps", "daemonsets"): ([_col("Desired", "The desired number of nodes that should be running the pod.",
                                   type_="integer"),
                              _col("Current", "The number of nodes currently running the pod.", type_="integer"),
                              _col("Ready", "The number of nodes running the pod and ready.", type_="integer"),
                              _col("Up-to-date", "The number of nodes running the updated pod.", type_="integer"),
                              _col("Available", "The number of nodes running the pod and available.",
                                   type_="integer"),
                              _col("Node Selector", "The node selector of the pod template."),
                              AGE, _CONTAINERS, _IMAGES, _SELECTOR], _daemonset_cells),
    ("", "services"): ([_col("Type", "The type of the service."),
                        _col("Cluster-IP", "The cluster IP of the service."),
                        _col("External-IP", "The external IPs of the service."),
                        _col("Port(s)", "The ports of the service."),
                        AGE,
                        _col("Selector", "The label selector of the service.", 1)], _service_cells),
    ("", "namespaces"): ([_col("Status", "The status of the namespace"), AGE], _namespace_cells),
    ("", "configmaps"): ([_col("Data", "The number of entries in Data and BinaryData.", type_="integer"), AGE],
                         _configmap_cells),
    ("", "serviceaccounts"): ([_col("Secrets", "The number of secrets of the service account.", type_="integer"),
                               AGE], _serviceaccount_cells),
    ("batch", "jobs"): ([_col("Status", "Status of the job."),
                         _col("Completions", "The completion status of the job."),
                         _col("Duration", "Time required to complete the job."),
                         AGE, _CONTAINERS, _IMAGES, _SELECTOR], _job_cells),
    ("batch", "cronjobs"): ([_col("Schedule", "The schedule of the cron job."),
                             _col("Timezone", "The time zone of the schedule."),
                             _col("Suspend", "Whether the cron job is suspended."),
                             _col("Active", "The number of active jobs.", type_="integer"),
                             _col("Last Schedule", "When the job was last scheduled."),
                             AGE, _CONTAINERS, _IMAGES, _SELECTOR], _cronjob_cells),
    ("", "nodes"): ([_col("Status", "The status of the node"),
                     _col("Roles", "The roles of the node"),
                     AGE,
                     _col("Version", "Kubelet Version reported by the node."),
                     _col("Internal-IP", "List of internal IPs of the node.", 1),
                     _col("External-IP", "List of external IPs of the node.", 1),
                     _col("OS-Image", "OS image reported by the node.", 1),
                     _col("Kernel-Version", "Kernel version reported by the node.", 1),
                     _col("Container-Runtime", "Container runtime and version reported by the node.", 1)],
                    _node_cells),
}


# ------------------------------------------------------------------------------------------------ tables


def column_definitions(k: KubeResource) -> list[TableColumnDefinition]:
    """CLUSTER, NAME, then the kind's columns (a CRD's printer columns, or NAME and AGE for other types)."""
    if k.printer_columns:
        cols = [_col(str(c["name"]), str(c.get("description") or ""), priority(c),
                     type_=str(c.get("type") or "string"), fmt=str(c.get("format") or ""))
                for c in k.printer_columns]
        return [CLUSTER, NAME, *cols]
    printer = PRINTERS.get((k.gvr.group, k.gvr.resource))
    return [CLUSTER, NAME, *(printer[0] if printer else [AGE])]


def cells(k: KubeResource, cluster: str, obj: Obj, now: float | None = None) -> list[Cell]:
    now = time.time() if now is None else now
    name = get(obj, "metadata", "name") or ""
    if k.printer_columns:
        return [cluster, name, *(printer_cell(c, obj, now) for c in k.printer_columns)]
    printer = PRINTERS.get((k.gvr.group, k.gvr.resource))
    return [cluster, name, *(printer[1](obj, now) if printer else [_age(obj, now)])]
