// The Kubernetes manifests (deploy/kubernetes): renders the cpu and gpu
// overlays with `kubectl kustomize`, validates every object against the
// Kubernetes API schemas (schema.mjs), and checks them against
// docker-compose.yml, the one place the deployment's settings come from:
// ports, probes, resource limits and reservations, the GPU, environment,
// image tags, the model volume; then security contexts, Services, HPAs and
// PodDisruptionBudgets.  Last, negative checks: broken objects must fail.
//
//   AT_SOURCE_DIR=. AT_KUBECTL=kubectl node check.mjs
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { validate } from "./schema.mjs";

const root = process.env.AT_SOURCE_DIR || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const kubectl = process.env.AT_KUBECTL || "kubectl";
const kdir = path.join(root, "deploy/kubernetes");

// Which compose service each Deployment stands for, per overlay.
const OVERLAYS = {
    cpu: { "asr-streaming": "asr_streaming_cpu", translate: "translate", tts: "tts", pipeline: "pipeline_cpu" },
    gpu: { "asr-streaming": "asr_streaming", translate: "translate", tts: "tts", pipeline: "pipeline" },
};
// The gauges the streams HPAs scale on (grepped in src/services below).
const STREAM_METRICS = { "asr-streaming": "asr_streams_active", pipeline: "pipeline_streams_active" };
const RUNNER_EXIT_GRACE_S = 3; // src/services/runner.c: after the drain timeout

function render(overlay) {
    const out = execFileSync(kubectl, ["kustomize", path.join(kdir, overlay)], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"], // kustomize v5 warns about `bases:` on stderr
        timeout: 30000,
    });
    return parseAllDocuments(out).map((d) => d.toJS()).filter(Boolean);
}

// ---- docker-compose.yml, with ${VAR:-default} taken at its default ----

function loadCompose() {
    const text = readFileSync(path.join(root, "docker-compose.yml"), "utf8").replace(
        /\$\{\w+:-([^}]*)\}/g,
        "$1",
    );
    return parse(text, { merge: true }).services;
}

// "8G" (Docker: binary units), "8Gi", "500m", "0.5", "2" -> a number
function quantity(q) {
    const m = String(q).match(/^([0-9.]+)([a-zA-Z]*)$/);
    if (!m) throw new Error(`bad quantity ${q}`);
    const units = { "": 1, m: 1e-3, k: 1e3, K: 2 ** 10, Ki: 2 ** 10, M: 2 ** 20, Mi: 2 ** 20, G: 2 ** 30, Gi: 2 ** 30 };
    if (!(m[2] in units)) throw new Error(`unit of ${q}`);
    return Number(m[1]) * units[m[2]];
}

// ---- the checks: each pushes its findings onto `bad` ----

function checkOverlay(name, objs, compose, bad) {
    const find = (kind, n) => objs.find((o) => o.kind === kind && o.metadata.name === n);
    const cm = objs.find((o) => o.kind === "ConfigMap");
    const envValue = (e) =>
        e.valueFrom ? cm && e.valueFrom.configMapKeyRef.name === cm.metadata.name ? cm.data[e.valueFrom.configMapKeyRef.key] : undefined : e.value;
    const pvc = objs.find((o) => o.kind === "PersistentVolumeClaim");
    if (!pvc || !pvc.spec.accessModes.includes("ReadWriteMany")) bad.push("model cache PVC: ReadWriteMany");

    for (const o of objs)
        for (const l of ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of"])
            if (!o.metadata.labels || !o.metadata.labels[l]) bad.push(`${o.kind}/${o.metadata.name}: label ${l}`);
    for (const o of objs) {
        const s = JSON.stringify(o);
        if (s.includes("CUDA_VISIBLE_DEVICES")) bad.push(`${o.kind}/${o.metadata.name}: sets CUDA_VISIBLE_DEVICES`);
        if (name !== "gpu" && s.includes("nvidia.com/gpu")) bad.push(`${o.kind}/${o.metadata.name}: GPU outside the gpu overlay`);
    }

    for (const [dname, cname] of Object.entries(OVERLAYS[name])) {
        const at = `${name}/${dname}`;
        const svc = compose[cname];
        const d = find("Deployment", dname);
        if (!d) {
            bad.push(`${at}: no Deployment`);
            continue;
        }
        const pod = d.spec.template.spec;
        const c = pod.containers[0];
        const ports = svc.ports.map((p) => Number(String(p).split(":").pop()));
        const port = ports[0];

        if (c.image !== svc.image) bad.push(`${at}: image ${c.image}, compose ${svc.image}`);
        for (const p of ports)
            if (!c.ports.some((cp) => cp.containerPort === p)) bad.push(`${at}: container port ${p}`);

        // probes: /ready and /health on the HTTP port; start-up time at
        // least compose's start_period
        const probe = (p, want) =>
            p && p.httpGet && p.httpGet.path === want && p.httpGet.port === port;
        if (!probe(c.readinessProbe, "/ready")) bad.push(`${at}: readinessProbe GET /ready :${port}`);
        if (!probe(c.livenessProbe, "/health")) bad.push(`${at}: livenessProbe GET /health :${port}`);
        if (c.startupProbe && !probe(c.startupProbe, "/health")) bad.push(`${at}: startupProbe GET /health :${port}`);
        const startup = c.startupProbe
            ? (c.startupProbe.periodSeconds || 10) * (c.startupProbe.failureThreshold || 3)
            : c.livenessProbe.initialDelaySeconds || 0;
        if (startup < parseInt(svc.healthcheck.start_period)) bad.push(`${at}: ${startup} s to start < compose's start_period`);

        // resources: compose's limits and reservations
        const r = svc.deploy.resources;
        const eq = (a, b) => a !== undefined && b !== undefined && Math.abs(quantity(a) - quantity(b)) < 1e-9;
        if (!eq(c.resources.limits.cpu, r.limits.cpus)) bad.push(`${at}: cpu limit ${c.resources.limits.cpu}, compose ${r.limits.cpus}`);
        if (!eq(c.resources.limits.memory, r.limits.memory)) bad.push(`${at}: memory limit ${c.resources.limits.memory}, compose ${r.limits.memory}`);
        if (!eq(c.resources.requests.cpu, r.reservations.cpus)) bad.push(`${at}: cpu request ${c.resources.requests.cpu}, compose ${r.reservations.cpus}`);
        if (!eq(c.resources.requests.memory, r.reservations.memory)) bad.push(`${at}: memory request ${c.resources.requests.memory}, compose ${r.reservations.memory}`);
        const gpus = (r.reservations.devices || []).filter((dv) => dv.driver === "nvidia").reduce((n, dv) => n + dv.count, 0);
        const kgpu = c.resources.limits["nvidia.com/gpu"];
        if (gpus ? String(kgpu) !== String(gpus) : kgpu !== undefined) bad.push(`${at}: nvidia.com/gpu ${kgpu}, compose ${gpus}`);
        if (gpus && !(pod.tolerations || []).some((t) => t.key === "nvidia.com/gpu")) bad.push(`${at}: GPU taint not tolerated`);

        // environment: compose's, with the Services' names in the URLs
        const env = Object.fromEntries((c.env || []).map((e) => [e.name, envValue(e)]));
        for (const [k, v] of Object.entries(svc.environment || {})) {
            if (k === "CUDA_VISIBLE_DEVICES") continue; // the device plugin's job
            let want = v === null ? "" : String(v); // `KEY: ${X:-}` parses as null
            const u = want.match(/^http:\/\/(\w+):(\d+)$/);
            if (u) {
                const target = Object.entries(OVERLAYS[name]).find(([, cn]) => cn === u[1]);
                want = `http://${target ? target[0] : "?"}:${u[2]}`;
                const s = target && find("Service", target[0]);
                if (!s || !s.spec.ports.some((p) => p.port === Number(u[2]))) bad.push(`${at}: ${k} names no Service port`);
            }
            if (env[k] !== want) bad.push(`${at}: ${k}=${env[k]}, compose ${want}`);
        }
        const drain = Number(env.AT_DRAIN_TIMEOUT);
        const preStop = c.lifecycle && c.lifecycle.preStop ? Number(c.lifecycle.preStop.exec.command[1]) : 0;
        if (!(pod.terminationGracePeriodSeconds > drain + preStop + RUNNER_EXIT_GRACE_S))
            bad.push(`${at}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} <= drain ${drain} + preStop ${preStop} + ${RUNNER_EXIT_GRACE_S}`);

        // security context
        const psc = pod.securityContext || {};
        const csc = c.securityContext || {};
        if (psc.runAsNonRoot !== true || psc.runAsUser !== 1000) bad.push(`${at}: runAsNonRoot, runAsUser 1000`);
        if (!psc.seccompProfile || psc.seccompProfile.type !== "RuntimeDefault") bad.push(`${at}: seccompProfile RuntimeDefault`);
        if (csc.allowPrivilegeEscalation !== false) bad.push(`${at}: allowPrivilegeEscalation false`);
        if (csc.readOnlyRootFilesystem !== true) bad.push(`${at}: readOnlyRootFilesystem`);
        if (!csc.capabilities || !(csc.capabilities.drop || []).includes("ALL")) bad.push(`${at}: capabilities drop ALL`);
        const volOf = (mountPath) => {
            const m = (c.volumeMounts || []).find((vm) => vm.mountPath === mountPath);
            return m && { mount: m, vol: (pod.volumes || []).find((v) => v.name === m.name) };
        };
        const tmp = volOf("/tmp");
        if (!tmp || !tmp.vol || !tmp.vol.emptyDir) bad.push(`${at}: emptyDir on /tmp`);

        // the model cache: where compose mounts it, read-only
        const wantsModels = (svc.volumes || []).some((v) => String(v).startsWith("models:/models"));
        const models = volOf("/models");
        const onPvc = models && models.vol && models.vol.persistentVolumeClaim && pvc && models.vol.persistentVolumeClaim.claimName === pvc.metadata.name;
        if (wantsModels && !(onPvc && models.mount.readOnly === true)) bad.push(`${at}: model PVC read-only on /models`);
        if (!wantsModels && models) bad.push(`${at}: /models mounted, compose does not`);

        // Service: selects the pods, compose's ports
        const tl = d.spec.template.metadata.labels;
        const selects = (sel) => sel && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => tl[k] === v);
        if (!selects(d.spec.selector.matchLabels)) bad.push(`${at}: selector does not match the pod labels`);
        const s = find("Service", dname);
        if (!s || (s.spec.type || "ClusterIP") !== "ClusterIP" || !selects(s.spec.selector)) bad.push(`${at}: ClusterIP Service selecting the pods`);
        else for (const p of ports) if (!s.spec.ports.some((sp) => sp.port === p)) bad.push(`${at}: Service port ${p}`);

        // PodDisruptionBudget and HorizontalPodAutoscaler
        const pdb = objs.find((o) => o.kind === "PodDisruptionBudget" && selects(o.spec.selector.matchLabels));
        if (!pdb || (pdb.spec.maxUnavailable === undefined && pdb.spec.minAvailable === undefined)) bad.push(`${at}: PodDisruptionBudget`);
        const hpa = objs.find((o) => o.kind === "HorizontalPodAutoscaler" && o.spec.scaleTargetRef.name === dname);
        if (!hpa || hpa.apiVersion !== "autoscaling/v2" || hpa.spec.scaleTargetRef.kind !== "Deployment") {
            bad.push(`${at}: autoscaling/v2 HorizontalPodAutoscaler`);
            continue;
        }
        if (!(hpa.spec.minReplicas >= 1 && hpa.spec.minReplicas <= hpa.spec.maxReplicas)) bad.push(`${at}: HPA replica bounds`);
        if (d.spec.replicas !== undefined) bad.push(`${at}: replicas set beside an HPA`);
        const metrics = hpa.spec.metrics || [];
        if (!metrics.some((m) => m.type === "Resource" && m.resource.name === "cpu" && m.resource.target.type === "Utilization"))
            bad.push(`${at}: HPA on CPU utilisation`);
        const streams = metrics.filter((m) => m.type === "Pods").map((m) => m.pods.metric.name);
        const want = STREAM_METRICS[dname] ? [STREAM_METRICS[dname]] : [];
        if (JSON.stringify(streams) !== JSON.stringify(want)) bad.push(`${at}: HPA Pods metrics ${streams}, want ${want}`);
    }

    // the Job fills the cache: `models pull`, the PVC mounted writable
    const job = objs.find((o) => o.kind === "Job");
    const jpod = job && job.spec.template.spec;
    const jc = jpod && jpod.containers[0];
    const jm = jc && (jc.volumeMounts || []).find((m) => m.mountPath === "/models");
    const jv = jm && jpod.volumes.find((v) => v.name === jm.name);
    if (!jc || !JSON.stringify(jc.command).includes("models pull")) bad.push(`${name}: Job running models pull`);
    else if (!/\/pipeline:/.test(jc.image)) bad.push(`${name}: Job image ${jc.image}: only the pipeline image carries \`audio-translator models\``);
    else if (!jv || !jv.persistentVolumeClaim || jv.persistentVolumeClaim.claimName !== pvc.metadata.name || jm.readOnly || jv.persistentVolumeClaim.readOnly)
        bad.push(`${name}: Job mounts the model PVC writable on /models`);
    else if (!jpod.securityContext.runAsNonRoot || jc.securityContext.readOnlyRootFilesystem !== true) bad.push(`${name}: Job security context`);
}

async function validateAll(where, objs, bad) {
    for (const o of objs) for (const p of await validate(o)) bad.push(`${where}: ${o.kind}/${o.metadata && o.metadata.name}: ${p}`);
}

// ---- main ----

const compose = loadCompose();
const sources = readdirSync(path.join(root, "src/services"))
    .filter((f) => f.endsWith(".c"))
    .map((f) => readFileSync(path.join(root, "src/services", f), "utf8"))
    .join("\n");
let failures = 0;
const report = (what, bad) => {
    console.log(`${bad.length ? "FAIL" : "ok  "} ${what}`);
    for (const b of bad) console.log(`     ${b}`);
    failures += bad.length ? 1 : 0;
};

for (const g of Object.values(STREAM_METRICS))
    report(`gauge ${g} is exported by src/services`, sources.includes(`"${g}"`) ? [] : [`${g} not found`]);

const rendered = {};
for (const name of Object.keys(OVERLAYS)) {
    rendered[name] = render(name);
    const bad = [];
    await validateAll(name, rendered[name], bad);
    report(`${name}: ${rendered[name].length} objects valid against the Kubernetes 1.27 schemas (strict fields)`, bad);
    const bad2 = [];
    checkOverlay(name, rendered[name], compose, bad2);
    report(`${name}: probes, resources, GPU, env, security, model PVC, Services, PDBs, HPAs`, bad2);
}
{
    const ing = parseAllDocuments(readFileSync(path.join(kdir, "ingress-example.yaml"), "utf8")).map((d) => d.toJS());
    const bad = [];
    await validateAll("ingress-example", ing, bad);
    for (const i of ing)
        for (const r of i.spec.rules)
            for (const p of r.http.paths) {
                const s = rendered.cpu.find((o) => o.kind === "Service" && o.metadata.name === p.backend.service.name);
                if (!s || !s.spec.ports.some((sp) => sp.name === p.backend.service.port.name)) bad.push(`backend ${p.backend.service.name} not rendered`);
            }
    report("ingress-example.yaml valid, its backend is the pipeline Service", bad);
}

// Negative checks: the validator and the checks above must catch these.
const dep = () => structuredClone(rendered.gpu.find((o) => o.kind === "Deployment" && o.metadata.name === "asr-streaming"));
const broken = [
    ["replicas a string", dep(), (o) => (o.spec.replicas = "two")],
    ["no containers", dep(), (o) => delete o.spec.template.spec.containers],
    ["a cpu limit that is no quantity", dep(), (o) => (o.spec.template.spec.containers[0].resources.limits.cpu = "4 cores")],
    ["probe without a port", dep(), (o) => delete o.spec.template.spec.containers[0].readinessProbe.httpGet.port],
    ["misspelt readinesProbe", dep(), (o) => (o.spec.template.spec.containers[0].readinesProbe = {})],
    ["unknown field deep in a probe", dep(), (o) => (o.spec.template.spec.containers[0].livenessProbe.httpGet.pth = "/x")],
    ["unknown field in an HPA target", structuredClone(rendered.cpu.find((o) => o.kind === "HorizontalPodAutoscaler")), (o) => (o.spec.metrics[0].resource.target.averageUtilisation = 1)],
    ["an unknown kind", { apiVersion: "v1", kind: "Deploymnet", metadata: { name: "x" } }, () => {}],
];
for (const [what, obj, breakIt] of broken) {
    breakIt(obj);
    const p = await validate(obj);
    report(`rejects ${what}${p.length ? ` (${p[0].slice(0, 90)})` : ""}`, p.length ? [] : ["accepted"]);
}
// each with what its finding must say
const mutated = [
    ["a memory limit unlike compose's", /memory limit 3Gi/, (objs) => (objs.find((o) => o.kind === "Deployment").spec.template.spec.containers[0].resources.limits.memory = "3Gi")],
    ["a GPU in the cpu overlay", /GPU outside the gpu overlay/, (objs) => (objs.find((o) => o.kind === "Deployment").spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] = "1")],
    ["a writable root file system", /readOnlyRootFilesystem/, (objs) => (objs.find((o) => o.kind === "Deployment").spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem = false)],
    ["readiness on /health", /readinessProbe/, (objs) => (objs.find((o) => o.kind === "Deployment").spec.template.spec.containers[0].readinessProbe.httpGet.path = "/health")],
    ["an HPA without its streams metric", /HPA Pods metrics/, (objs) => (objs.find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === "asr-streaming").spec.metrics.length = 1)],
    ["a writable model mount", /model PVC read-only/, (objs) => (objs.find((o) => o.kind === "Deployment").spec.template.spec.containers[0].volumeMounts.find((m) => m.mountPath === "/models").readOnly = false)],
];
for (const [what, want, breakIt] of mutated) {
    const objs = structuredClone(rendered.cpu);
    breakIt(objs);
    const bad = [];
    checkOverlay("cpu", objs, compose, bad);
    const hit = bad.find((b) => want.test(b));
    report(`checks catch ${what}${hit ? ` (${hit})` : ""}`, hit ? [] : [`not caught: ${bad.join("; ") || "no finding"}`]);
}

if (failures) {
    console.log(`${failures} check(s) failed`);
    process.exit(1);
}
console.log("all deploy checks passed");
